//! The `ciphercast` binary: parses the command line, starts logging, and
//! hands over to the library — or, for `ciphercast bench`, to the [`bench`]
//! module, which lives in the binary so that it can use only the library's
//! public interface. Exit status: 0 success, 1 failure, 2 usage.

#![deny(unsafe_code)]

mod bench;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use log::error;

use ciphercast::cli::{Cli, ClientArgs, Command, ServerArgs, VideosArgs};
use ciphercast::{client, server, videos};

fn main() -> ExitCode {
    quiet_ffmpeg();
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Server(_) => "info",
        Command::Client(_) | Command::Videos(_) | Command::Bench(_) => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level)).init();
    match cli.command {
        Command::Server(args) => run_server(args),
        Command::Client(args) => run_client(args),
        Command::Videos(args) => run_videos(args),
        Command::Bench(args) => match bench::run(bench::Options { quick: args.quick, only: args.only }) {
            Ok(path) => {
                println!("results: {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
    }
}

/// FFmpeg prints a line for every damaged packet it meets (hundreds for one
/// damaged file), in its own words; the server logs what matters once, in
/// ours ("frame 62 does not decode, skipping it"). OpenCV reads
/// `OPENCV_FFMPEG_LOGLEVEL` when it first opens a video: −8 is FFmpeg's
/// quiet. Set it yourself (to 16, say) to see FFmpeg's messages again.
#[allow(unsafe_code)]
fn quiet_ffmpeg() {
    if std::env::var_os("OPENCV_FFMPEG_LOGLEVEL").is_none() && std::env::var_os("OPENCV_FFMPEG_DEBUG").is_none() {
        // SAFETY: changing the environment races with threads reading it;
        // this runs first thing in main, before any thread exists.
        unsafe { std::env::set_var("OPENCV_FFMPEG_LOGLEVEL", "-8") };
    }
}

fn run_videos(args: VideosArgs) -> ExitCode {
    if let Some(store) = &args.clean_store {
        return run_clean_store(store);
    }
    if !args.from.is_empty() {
        return run_ladder(args);
    }
    let spec = videos::Spec { out: args.out, seconds: args.seconds, fps: args.fps, heights: args.heights };
    match videos::generate(&spec) {
        Ok(files) => {
            for file in files {
                println!("wrote {}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ciphercast videos --clean-store DIR`.
fn run_clean_store(store: &std::path::Path) -> ExitCode {
    if !store.is_dir() {
        eprintln!("error: {} is not a store directory", store.display());
        return ExitCode::from(2);
    }
    match server::clean_store(store) {
        Ok(cleaned) => {
            let busy =
                if cleaned.busy > 0 { format!(", {} being prepared left alone", cleaned.busy) } else { String::new() };
            println!(
                "removed {} entries ({:.1} MB) whose source is gone; kept {}{busy}",
                cleaned.removed,
                cleaned.bytes as f64 / 1e6,
                cleaned.kept
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot clean {}: {e}", store.display());
            ExitCode::from(1)
        }
    }
}

/// `ciphercast videos --from`: Ctrl-C stops the file being made, and its
/// unfinished files are removed before the process exits.
fn run_ladder(args: VideosArgs) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || on_signal.store(true, Ordering::SeqCst)) {
        error!("cannot install the Ctrl-C handler: {e}");
    }
    let request =
        videos::ladder::Request { inputs: args.from, heights: args.heights, out: args.out, force: args.force };
    match videos::ladder::make(&request, &stop) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_bad_input() { 2 } else { 1 })
        }
    }
}

/// The web page's listener, and its token when it is bound beyond this
/// machine's own 127.0.0.1 (or ::1).
fn web_options(address: &str) -> Result<(TcpListener, Option<String>), String> {
    // A port alone is on 127.0.0.1.
    let address = match address.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => address.to_string(),
    };
    let address = address.as_str();
    let listener = TcpListener::bind(address).map_err(|e| format!("cannot serve the web page on {address}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let private = matches!(local.ip(), std::net::IpAddr::V4(ip) if ip == std::net::Ipv4Addr::LOCALHOST)
        || local.ip() == std::net::Ipv6Addr::LOCALHOST;
    let token = (!private).then(|| format!("{:032x}", rand::random::<u128>()));
    Ok((listener, token))
}

fn run_server(args: ServerArgs) -> ExitCode {
    let address = format!("{}:{}", args.bind, args.port);
    let listener = match TcpListener::bind(&address) {
        Ok(listener) => listener,
        Err(e) => {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => " (another server is running there? pick another with --port)",
                std::io::ErrorKind::AddrNotAvailable => " (is --bind an address of this machine?)",
                _ => "",
            };
            eprintln!("error: cannot listen on {address}: {e}{hint}");
            return ExitCode::from(1);
        }
    };
    let shutdown = match server::Shutdown::new(&listener) {
        Ok(shutdown) => shutdown,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let on_signal = shutdown.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.trigger()) {
        error!("cannot install the Ctrl-C handler: {e}");
    }
    // The store lives beside the videos unless told otherwise.
    let store = match args.store.as_deref() {
        Some(dir) if dir == std::path::Path::new("none") => None,
        Some(dir) => Some(dir.to_path_buf()),
        None => Some(args.videos.join(".ciphercast")),
    };
    let web = match args.web.as_deref().map(web_options) {
        None => None,
        Some(Ok(options)) => Some(options),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let config = server::Config {
        web: web.map(|(listener, token)| server::WebOptions {
            listener: listener.into(),
            token,
            show_addresses: args.web_show_addresses,
        }),
        relay: args.relay,
        max_clients: args.max_clients,
        videos: args.videos,
        jpeg_quality: args.jpeg_quality,
        trace: args.trace,
        cache_mb: args.cache_mb,
        store,
        max_per_address: args.max_per_address,
    };
    match server::run(listener, config, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_client(args: ClientArgs) -> ExitCode {
    let config = client::Config {
        server: args.server,
        name: args.name,
        identity: match (args.identity, args.ephemeral) {
            (Some(path), _) => client::IdentitySource::File(path),
            (None, true) => client::IdentitySource::Ephemeral,
            (None, false) => client::IdentitySource::PerName,
        },
        display: args.display,
        pace: args.pace,
        plan: args.plan,
        max_kbps: args.max_kbps,
        trace: args.trace,
    };
    ExitCode::from(client::run(config) as u8)
}
