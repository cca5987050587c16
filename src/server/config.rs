//! How the server behaves: the options of `ciphercast server`, as the
//! library takes them. Read by every thread, changed by none.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;

use crate::shared::limits::{DEFAULT_CACHE_MB, DEFAULT_JPEG_QUALITY, DEFAULT_MAX_CLIENTS};

/// Who receives a relayed sealed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RelayMode {
    /// Everyone but the sender, as in the assignment: the class sees that
    /// only the addressee can open it.
    Broadcast,
    /// The addressee only.
    Direct,
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who receives relayed messages.
    pub relay: RelayMode,
    /// Most clients joined at once.
    pub max_clients: usize,
    /// The video library.
    pub videos: PathBuf,
    /// JPEG quality of streamed frames, 1–100.
    pub jpeg_quality: u8,
    /// Print a line on stderr for every frame sent or received.
    pub trace: bool,
    /// Budget of the shared frame cache, in MiB (0: no cache).
    pub cache_mb: usize,
    /// The prepared library: every frame of every video encoded once, kept
    /// here (`None`: no store, every stream decodes).
    pub store: Option<PathBuf>,
    /// Most clients joined from one IP address (`None`: no cap).
    pub max_per_address: Option<usize>,
    /// The instructor's web page (`None`: none).
    pub web: Option<WebOptions>,
}

/// The web page of `--web`.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// Where the page is served, bound already (port 0 lets the system choose).
    pub listener: Arc<TcpListener>,
    /// Required on every request (`?token=…`) when set: a page bound
    /// beyond this machine must not show the class to anyone who asks.
    pub token: Option<String>,
    /// Show each client's address (a projector shows it to the whole room).
    pub show_addresses: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            relay: RelayMode::Broadcast,
            max_clients: DEFAULT_MAX_CLIENTS,
            videos: PathBuf::from("videos"),
            jpeg_quality: DEFAULT_JPEG_QUALITY,
            trace: false,
            cache_mb: DEFAULT_CACHE_MB,
            store: None,
            max_per_address: None,
            web: None,
        }
    }
}
