//! The server: a blocking accept loop and two threads per client.
//!
//! ```text
//!  acceptor thread (run)            per connection
//!  ─────────────────────            ───────────────────────────────────────
//!  loop {                           client-<addr>: read → decode → handle_*
//!    accept()  ──── spawn ───────▶      │ queues replies and broadcasts
//!  }                                    ▼
//!                                   Registry (Mutex): name → key, outbox
//!                                       │ try_send, never blocks
//!                                       ▼
//!                                   writer-<addr>: outbox → socket
//! ```
//!
//! [`run`] owns the accept loop, on the thread that calls it. Each accepted
//! connection gets a handler thread ([`handler`]) that blocks reading from
//! its socket and a writer thread ([`writer`]) that blocks writing to it;
//! they share the [`registry`] of joined clients. A playback gets a
//! streaming thread of its own ([`stream`]). [`Shutdown`] stops it all: it
//! wakes the acceptor blocked in `accept()` by connecting to it, and every
//! handler blocked in `read` by shutting its socket down.

mod cache;
mod decoder;
mod door;
mod group_commit;
mod handler;
mod hold;
mod library;
mod outbox;
mod pacing;
mod registry;
mod stream;
mod writer;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{self, IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use clap::ValueEnum;
use log::{error, info, warn};

use crate::shared::limits::{
    CONNECTION_STACK_BYTES, DEFAULT_CACHE_MB, DEFAULT_JPEG_QUALITY, DEFAULT_MAX_CLIENTS, MAX_PENDING_JOINS,
};
use crate::shared::message::{RefusalCode, ServerMessage, encode};
use door::Door;
use registry::Registry;

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
        }
    }
}

/// What every handler thread shares.
struct Context {
    config: Config,
    registry: Registry,
    /// Encoded video frames, shared by every streaming thread.
    frames: Arc<cache::FrameCache>,
    /// Open video files, shared by every streaming thread.
    decoders: Arc<decoder::Decoders>,
    /// Connections accepted that have not joined (or left) yet.
    door: Arc<Door>,
    /// Every connection being served.
    live: Live,
}

/// A handle on the socket of every connection being served, so that
/// shutdown can wake each handler blocked in `read`, and a way to wait for
/// them all to end. A connection's entry goes as soon as its handler ends,
/// so no socket of a client that left stays open (it would linger in
/// CLOSE_WAIT, for all to see in `ss`).
#[derive(Default)]
struct Live {
    sockets: Mutex<HashMap<u64, TcpStream>>,
    ended: Condvar,
    /// Set when shutdown begins: handlers stop serving after the frame in hand.
    closing: AtomicBool,
}

impl Live {
    fn sockets(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self) -> usize {
        self.sockets().len()
    }

    /// Whether shutdown has begun.
    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Wakes every handler (its writer still sends what is queued) and
    /// waits until each has ended. Shutting a socket down for reading is
    /// not enough on its own: Linux still delivers what the peer goes on
    /// sending, so a handler also stops at the next frame once it sees
    /// [`closing`](Live::closing) — a client flooding the server cannot
    /// keep it from stopping.
    fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let mut sockets = self.sockets();
        for stream in sockets.values() {
            let _ = stream.shutdown(net::Shutdown::Read);
        }
        while !sockets.is_empty() {
            sockets = self.ended.wait(sockets).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// One connection's entry in [`Live`], removed when its handler thread ends
/// (however it ends).
pub(crate) struct LiveEntry {
    context: Arc<Context>,
    id: u64,
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        self.context.live.sockets().remove(&self.id);
        self.context.live.ended.notify_all();
    }
}

/// Stops a running server from another thread (a signal handler, a test).
#[derive(Clone)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    /// Where to connect to wake the acceptor blocked in `accept()`.
    wake: SocketAddr,
}

impl Shutdown {
    /// A shutdown handle for the server that will run on `listener`.
    pub fn new(listener: &TcpListener) -> io::Result<Shutdown> {
        let mut wake = listener.local_addr()?;
        // A server bound to every interface is woken through loopback.
        match wake.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => wake.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => wake.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        Ok(Shutdown { requested: Arc::new(AtomicBool::new(false)), wake })
    }

    /// Asks the server to stop. Returns at once; [`run`] returns when every
    /// thread has ended.
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        // accept() has no timeout: the only way to wake it is a connection.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// Serves `listener` until `shutdown` is triggered, then tells every client,
/// wakes every connection and waits for each to end, and returns.
pub fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<()> {
    let limit = config.max_clients + MAX_PENDING_JOINS;
    let frames = Arc::new(cache::FrameCache::new(config.cache_mb.saturating_mul(1024 * 1024)));
    let context = Arc::new(Context {
        registry: Registry::new(config.max_clients),
        config,
        frames,
        decoders: Arc::default(),
        door: Arc::default(),
        live: Live::default(),
    });
    info!("listening on {} (relay: {:?})", listener.local_addr()?, context.config.relay);

    let mut next_id: u64 = 0;
    for accepted in listener.incoming() {
        if shutdown.is_requested() {
            break;
        }
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before we
                // got to it: not this loop's fault, and not a reason to spin.
                warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if context.live.count() >= limit {
            let reason = format!("server is full ({} clients)", context.config.max_clients);
            refuse_at_door(stream, RefusalCode::ServerFull, reason);
            continue;
        }
        // Strangers who have not joined yet get at most MAX_PENDING_JOINS
        // threads between them, so they cannot crowd out people who join.
        let Some(pending) = context.door.enter() else {
            let reason = "too many connections are waiting to join; try again in a few seconds";
            refuse_at_door(stream, RefusalCode::Busy, reason.into());
            continue;
        };
        next_id += 1;
        let id = next_id;
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let waker = match stream.try_clone() {
            Ok(waker) => waker,
            Err(e) => {
                warn!("{peer}: cannot clone the socket: {e}");
                continue;
            }
        };
        context.live.sockets().insert(id, waker);
        let entry = LiveEntry { context: Arc::clone(&context), id };
        let ctx = Arc::clone(&context);
        let spawned = thread::Builder::new()
            .name(format!("client-{peer}"))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || handler::serve(stream, id, ctx, pending, entry));
        // The thread runs detached; shutdown waits for it through `live`.
        if let Err(e) = spawned {
            error!("{peer}: cannot start a thread: {e}");
        }
    }

    info!("shutting down: telling {} connection(s)", context.live.count());
    context.registry.close_all("server is shutting down");
    context.live.close_all();
    info!("stopped");
    Ok(())
}

/// Turns a connection away without giving it a thread: one non-blocking
/// write (a refusal is far smaller than any socket buffer), then close.
fn refuse_at_door(mut stream: TcpStream, code: RefusalCode, reason: String) {
    warn!("refused a connection: {reason}");
    let refusal = ServerMessage::Refused { code, reason };
    if let Ok(bytes) = encode(&refusal) {
        let _ = stream.set_nonblocking(true);
        let _ = stream.write_all(&bytes);
    }
}
