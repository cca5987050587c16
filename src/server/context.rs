//! What every connection's threads share: the configuration, the registry,
//! the video caches, the door and the table of live connections. Built once
//! by the acceptor; each handler thread holds a reference.

use std::sync::Arc;

use super::cache::FrameCache;
use super::config::Config;
use super::decoder::Decoders;
use super::door::Door;
use super::live::Live;
use super::per_address::PerAddress;
use super::prepare::Prepared;
use super::registry::Registry;
use super::web::Web;
use super::web::metrics::Traffic;

/// What every handler thread shares.
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    /// Encoded video frames, shared by every streaming thread.
    pub(crate) frames: Arc<FrameCache>,
    /// Open video files, shared by every streaming thread.
    pub(crate) decoders: Arc<Decoders>,
    /// The prepared library, shared by the preparing and every streaming thread.
    pub(crate) prepared: Arc<Prepared>,
    /// Clients joined per address, against `--max-per-address`.
    pub(crate) per_address: Arc<PerAddress>,
    /// Connections accepted that have not joined (or left) yet.
    pub(crate) door: Arc<Door>,
    /// Every connection being served.
    pub(crate) live: Arc<Live>,
    /// What the sockets carried and where pictures came from.
    pub(crate) traffic: Arc<Traffic>,
    /// The web page's hub, with `--web`.
    pub(crate) web: Option<Arc<Web>>,
}
