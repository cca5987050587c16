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
//! they share the [`registry`] of joined clients. Connections from an
//! address with many waiting to join queue at the [`door`], and a
//! door-keeper thread gives them their handler in turn. A playback gets a
//! streaming thread of its own ([`stream`]); with a store, one background
//! thread prepares every video once ([`prepare`]); with `--web`, a small
//! HTTP server shows all this live to the class ([`web`]). [`Shutdown`] stops it all: it
//! wakes the acceptor blocked in `accept()` by connecting to it; the
//! acceptor then tells every client and wakes every handler blocked in
//! `read` by shutting its socket down ([`live`]).

mod adaptive;
mod cache;
mod config;
mod context;
mod control;
mod damaged;
mod decoder;
mod door;
mod flow_control;
mod group_commit;
mod handler;
mod hold;
mod join_clock;
mod library;
mod live;
mod outbox;
mod pacing;
mod per_address;
mod plan;
mod play;
mod prepare;
mod refusal;
mod registry;
mod sources;
mod store;
mod stream;
mod video_item;
mod web;
mod writer;

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info, warn};

pub use config::{Config, RelayMode, WebOptions};
use context::Context;
use live::Live;
use registry::Registry;
pub use sources::{Cleaned, clean_store};

use crate::shared::limits::{CONNECTION_STACK_BYTES, MAX_PENDING_JOINS};
use crate::shared::message::{RefusalCode, ServerMessage, encode};

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

/// Raises this process's open-file soft limit to the hard limit (often 1024
/// → 524288): every client is a socket, and so is every connection queued
/// at the door. Children inherit the raised limit.
pub fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Serves `listener` until `shutdown` is triggered, then tells every client,
/// wakes every connection and waits for each to end, and returns.
pub fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<()> {
    raise_open_file_limit();
    let limit = config.max_clients + MAX_PENDING_JOINS;
    let frames = Arc::new(cache::FrameCache::new(config.cache_mb.saturating_mul(1024 * 1024)));
    let prepared = Arc::new(prepare::Prepared::new(config.store.clone(), i32::from(config.jpeg_quality)));
    let context_limit = config.max_per_address;
    let web_options = config.web.clone();
    let web = web_options.as_ref().map(|options| Arc::new(web::Web::new(options.show_addresses)));
    let context = Arc::new(Context {
        registry: Registry::new(config.max_clients),
        config,
        frames,
        decoders: Arc::default(),
        prepared,
        per_address: Arc::new(per_address::PerAddress::new(context_limit)),
        door: Arc::default(),
        live: Arc::new(Live::default()),
        traffic: Arc::default(),
        web: web.clone(),
    });
    info!("listening on {} (relay: {:?})", listener.local_addr()?, context.config.relay);
    let web_server = match (web_options, web) {
        (Some(options), Some(web)) => Some(start_web(&options, web, &context)?),
        _ => None,
    };
    let door_keeper = start_door_keeper(&context)?;
    let preparing = start_preparing(&context);

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
        // The join deadline counts from here, not from when a thread takes
        // the connection (the door may keep it waiting).
        let accepted_at = Instant::now();
        if context.live.count() >= limit {
            let reason = format!("server is full ({} clients)", context.config.max_clients);
            refuse_at_door(stream, RefusalCode::ServerFull, reason);
            continue;
        }
        // Strangers who have not joined yet get a few threads per address
        // and MAX_PENDING_JOINS in all, so they cannot crowd out people who join.
        match context.door.enter(stream, accepted_at) {
            door::Admission::Enter(stream, pending) => serve(&context, stream, accepted_at, pending),
            door::Admission::Queued => {}
            door::Admission::Busy(stream) => refuse_at_door(stream, RefusalCode::Busy, BUSY.into()),
        }
    }

    info!("shutting down: telling {} connection(s) (and any queued at the door)", context.live.count());
    // In this order: handlers stop serving, the registry tells everyone (its
    // goodbye is the last thing queued for each client), then every handler
    // is woken and waited for.
    context.live.begin_closing();
    context.door.close();
    let _ = door_keeper.join();
    context.registry.close_all("server is shutting down");
    context.live.close_all();
    if let Some((stop, thread)) = preparing {
        stop.store(true, Ordering::Relaxed);
        let _ = thread.join();
    }
    if let Some(web_server) = web_server {
        web_server.stop();
    }
    info!("stopped");
    Ok(())
}

/// Starts the web page's server and says where to open it.
fn start_web(options: &WebOptions, web: Arc<web::Web>, context: &Arc<Context>) -> io::Result<web::http::Running> {
    let listener = options.listener.try_clone()?;
    let address = listener.local_addr()?;
    let query = options.token.as_ref().map(|token| format!("?token={token}")).unwrap_or_default();
    info!("web page listening on http://{address}/{query}");
    web::http::start(listener, web, Arc::clone(context), options.token.clone())
}

/// Why a connection is turned away with `busy`.
const BUSY: &str = "too many connections are waiting to join; try again in a few seconds";

/// Gives an accepted connection its handler thread.
fn serve(context: &Arc<Context>, stream: TcpStream, accepted_at: Instant, pending: door::PendingJoin) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let entry = match context.live.enter(&stream) {
        Ok(entry) => entry,
        Err(e) => {
            warn!("{peer}: cannot clone the socket: {e}");
            return;
        }
    };
    let ctx = Arc::clone(context);
    let spawned = thread::Builder::new()
        .name(format!("client-{peer}"))
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(move || handler::serve(stream, accepted_at, ctx, pending, entry));
    // The thread runs detached; shutdown waits for it through `live`.
    if let Err(e) = spawned {
        error!("{peer}: cannot start a thread: {e}");
    }
}

/// Starts the door-keeper: the thread that lets in the connections queued
/// at their address's door, or turns them away when they have waited too long.
fn start_door_keeper(context: &Arc<Context>) -> io::Result<thread::JoinHandle<()>> {
    let ctx = Arc::clone(context);
    thread::Builder::new().name("door".into()).spawn(move || {
        while let Some(turn) = ctx.door.next_turn() {
            match turn {
                door::Turn::Enter { stream, accepted, pending } => serve(&ctx, stream, accepted, pending),
                door::Turn::Expired(stream) => refuse_at_door(stream, RefusalCode::Busy, BUSY.into()),
                door::Turn::Closing(stream) => {
                    refuse_at_door(stream, RefusalCode::ShuttingDown, "the server is shutting down".into())
                }
            }
        }
    })
}

/// Starts the preparing thread, when there is a store.
fn start_preparing(context: &Arc<Context>) -> Option<(Arc<AtomicBool>, thread::JoinHandle<()>)> {
    let store = context.config.store.as_ref()?;
    info!("store: {}", store.display());
    let stop = Arc::new(AtomicBool::new(false));
    let (prepared, decoders) = (Arc::clone(&context.prepared), Arc::clone(&context.decoders));
    let (videos, flag) = (context.config.videos.clone(), Arc::clone(&stop));
    let spawned =
        thread::Builder::new().name("prepare".into()).spawn(move || prepare::run(prepared, videos, decoders, flag));
    match spawned {
        Ok(thread) => Some((stop, thread)),
        Err(e) => {
            warn!("cannot start the preparing thread ({e}): videos are decoded as they play");
            None
        }
    }
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
