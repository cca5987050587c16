//! The command line: `ciphercast server | client | videos | bench`, parsed
//! with clap's derive API on the main thread. The doc comments below are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::Display;
use crate::server::RelayMode;
use crate::shared::limits::{
    DEFAULT_CACHE_MB, DEFAULT_JPEG_QUALITY, DEFAULT_MAX_CLIENTS, DEFAULT_PORT, MAX_MAX_CLIENTS,
};
use crate::shared::video::{Pace, PlanKind};

/// ciphercast: end-to-end encrypted chat through a relaying server, on blocking sockets.
#[derive(Debug, Parser)]
#[command(name = "ciphercast", version, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: keep the registry of clients and keys, relay sealed messages.
    #[command(
        after_help = "Examples:\n  ciphercast server\n  ciphercast server --bind 0.0.0.0 --port 9000 --relay direct"
    )]
    Server(ServerArgs),
    /// Run an interactive client.
    #[command(
        after_help = "Examples:\n  ciphercast client --name alice\n  ciphercast client --server 192.168.1.20:8005 --identity alice.pem\n  printf '1\\nbob\\nhello\\n3\\n' | ciphercast client --name alice"
    )]
    Client(ClientArgs),
    /// Generate the demo videos Video_1 and Video_2 at several resolutions, or the ladder of your own files (--from).
    #[command(
        after_help = "Examples:\n  ciphercast videos\n  ciphercast videos --out /tmp/clips --seconds 2 --fps 10 --heights 24,48,96\n  ciphercast videos --from lecture.mp4\n  ciphercast videos --from a.mp4 b.avi --heights 360,720 --out /tmp/library --force"
    )]
    Videos(VideosArgs),
    /// Measure joins, chat latency, concurrent viewers and memory; results to target/bench/results.json.
    #[command(after_help = "Examples:\n  ciphercast bench\n  ciphercast bench --quick\n  ciphercast bench --only chat")]
    Bench(BenchArgs),
}

/// Options of `ciphercast bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Small counts, checking outcomes only (as `make test` runs it).
    #[arg(long)]
    pub quick: bool,
    /// Run one phase only; its results go to results-PHASE.json.
    #[arg(long, value_enum)]
    pub only: Option<BenchPhase>,
}

/// A phase of `ciphercast bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchPhase {
    /// 1000 joins, bytes per join, memory per client.
    Join,
    /// Chat latency, idle and with streams; crypto costs.
    Chat,
    /// Concurrent real-time viewers.
    Viewers,
    /// The adaptive plan, unthrottled and on a 12 Mbit/s link.
    Adaptive,
}

/// Options of `ciphercast server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on; 0.0.0.0 serves the whole classroom network.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// TCP port to listen on.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Directory of videos to serve.
    #[arg(long, default_value = "videos")]
    pub videos: PathBuf,
    /// Who receives a sealed message: everyone (to show only the addressee can open it) or the addressee only.
    #[arg(long, value_enum, default_value_t = RelayMode::Broadcast)]
    pub relay: RelayMode,
    /// JPEG quality of streamed frames (1-100).
    #[arg(long, default_value_t = DEFAULT_JPEG_QUALITY, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,
    /// Memory for the shared cache of encoded video frames, in MiB (0: no cache).
    #[arg(long, default_value_t = DEFAULT_CACHE_MB, value_parser = parse_cache_mb)]
    pub cache_mb: usize,
    /// Where every video is prepared once, all its frames encoded, so streams only read
    /// [default: VIDEOS/.ciphercast]; `none`: no store, every stream decodes.
    #[arg(long, value_name = "DIR|none")]
    pub store: Option<PathBuf>,
    /// Print one line on stderr per frame sent or received (never message contents).
    #[arg(long)]
    pub trace: bool,
    /// Most clients joined at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS, value_parser = parse_max_clients)]
    pub max_clients: usize,
    /// Most clients joined from one IP address [default: unlimited] (a lab behind NAT is one address).
    #[arg(long, value_parser = parse_max_clients)]
    pub max_per_address: Option<usize>,
    /// Serve the instructor's live web page of the server at ADDR:PORT, or PORT on 127.0.0.1 (e.g. 8080);
    /// bound beyond 127.0.0.1 it needs the random token printed at start.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub web: Option<String>,
    /// Show each client's address on the web page (a projector shows it to the whole room).
    #[arg(long, requires = "web")]
    pub web_show_addresses: bool,
}

/// Options of `ciphercast client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Server to connect to, as HOST:PORT.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_PORT}"))]
    pub server: String,
    /// Name to join under (asked for when missing).
    #[arg(long)]
    pub name: Option<String>,
    /// Private key file (PKCS#8 PEM, mode 0600), created when missing
    /// [default: one per name under $XDG_CONFIG_HOME/ciphercast, else ~/.config/ciphercast].
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// A fresh key for this run only, and nothing written to disk (known peers forgotten too).
    #[arg(long, conflicts_with = "identity")]
    pub ephemeral: bool,
    /// Where videos play: a window, the terminal, nowhere (decode and count only), or auto.
    #[arg(long, value_enum, default_value_t = Display::Auto)]
    pub display: Display,
    /// native: at the video's frame rate; none: as fast as the client reads.
    #[arg(long, value_enum, default_value_t = Pace::Native)]
    pub pace: Pace,
    /// thirds: the assignment's plan; adaptive: each second's resolution follows what the link carries.
    #[arg(long, value_enum, default_value_t = PlanKind::Thirds)]
    pub plan: PlanKind,
    /// Read at most N kbit/s (of 1000 bits) from the server, to show a slow link on one machine [default: unlimited].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_kbps: Option<u32>,
    /// Print one line on stderr per frame sent or received (never message contents).
    #[arg(long)]
    pub trace: bool,
}

/// Options of `ciphercast videos`.
#[derive(Debug, Args)]
pub struct VideosArgs {
    /// Directory to write to (created if missing).
    #[arg(long, default_value = "videos")]
    pub out: PathBuf,
    /// Length of each demo video in seconds.
    #[arg(long, default_value_t = 10.0, conflicts_with = "from")]
    pub seconds: f64,
    /// Frames per second of the demo videos.
    #[arg(long, default_value_t = 30.0, conflicts_with = "from")]
    pub fps: f64,
    /// Heights to generate, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [240u32, 720, 1440])]
    pub heights: Vec<u32>,
    /// Make NAME_<height>p.mp4 for each height from each FILE (NAME: the file's name without its extension),
    /// instead of the demo videos. Pictures only: audio is not carried.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub from: Vec<PathBuf>,
    /// With --from: replace output files that already exist.
    #[arg(long, requires = "from")]
    pub force: bool,
    /// Instead of making videos: remove the entries of the server's store DIR
    /// (e.g. videos/.ciphercast) whose source file is gone or changed.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["from", "seconds", "fps", "heights", "out"])]
    pub clean_store: Option<PathBuf>,
}

fn parse_cache_mb(text: &str) -> Result<usize, String> {
    whole_number(text, 0..=65_536)
}

fn parse_max_clients(text: &str) -> Result<usize, String> {
    whole_number(text, 1..=MAX_MAX_CLIENTS)
}

fn whole_number(text: &str, range: std::ops::RangeInclusive<usize>) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {} to {}", range.start(), range.end())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_interface() {
        let cli = Cli::parse_from(["ciphercast", "server"]);
        let Command::Server(args) = cli.command else { panic!("not a server") };
        assert_eq!((args.bind.as_str(), args.port, args.max_clients), ("127.0.0.1", 8005, 1024));
        assert_eq!(args.relay, RelayMode::Broadcast);
        let cli = Cli::parse_from(["ciphercast", "client"]);
        let Command::Client(args) = cli.command else { panic!("not a client") };
        assert_eq!(args.server, "127.0.0.1:8005");
        assert!(Cli::try_parse_from(["ciphercast", "server", "--max-clients", "0"]).is_err());
    }

    #[test]
    fn videos_from_takes_files_and_refuses_the_demo_options() {
        let cli = Cli::parse_from(["ciphercast", "videos", "--from", "a.mp4", "b.avi", "--heights", "24,48"]);
        let Command::Videos(args) = cli.command else { panic!("not videos") };
        assert_eq!(args.from, [PathBuf::from("a.mp4"), PathBuf::from("b.avi")]);
        assert_eq!((args.heights, args.force), (vec![24, 48], false));
        for demo_option in [["--seconds", "2"], ["--fps", "10"]] {
            let mut line = vec!["ciphercast", "videos", "--from", "a.mp4"];
            line.extend(demo_option);
            let error = Cli::try_parse_from(line).expect_err("accepted with a demo option");
            assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "{error}");
        }
        assert!(Cli::try_parse_from(["ciphercast", "videos", "--force"]).is_err(), "--force without --from");
        let cli = Cli::parse_from(["ciphercast", "videos", "--seconds", "2"]);
        let Command::Videos(args) = cli.command else { panic!("not videos") };
        assert!(args.from.is_empty() && args.seconds == 2.0);
    }
}
