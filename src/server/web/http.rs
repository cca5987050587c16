//! The web page's HTTP server, on `std::net` in the style of the main one:
//! one acceptor thread, one thread per connection, every limit named. It
//! serves the page (`/`: HTML, CSS and JavaScript embedded in the binary,
//! the present state inside it, nothing fetched from elsewhere — a
//! classroom may be offline), the live events (`/events`, Server-Sent
//! Events), the same state as JSON (`/state`) and the counters
//! (`/metrics`, Prometheus text). Only `GET`; one request per connection.
//!
//! Bound to 127.0.0.1 it is the instructor's alone. Bound elsewhere, every
//! request must carry the random token the server printed at start
//! (`?token=…`); others get 403.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use log::{debug, warn};

use super::Web;
use super::metrics;
use crate::server::context::Context;

/// Connections served at once (page loads and event streams); more get 503.
pub(crate) const MAX_WEB_CONNECTIONS: usize = 32;

/// The longest request head read.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// How long a request may take to arrive, and a page to be written.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a browser may leave its event stream unread before it is cut
/// off (it reconnects by itself, and is shown the present again).
const EVENTS_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The send buffer asked for an event stream: a browser that stops reading
/// holds a few hundred events in the kernel, not megabytes of them; the
/// rest it loses, counted.
const EVENTS_SEND_BUFFER: usize = 64 * 1024;

/// An event stream with nothing to say says so this often, so that a
/// browser that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// What the connections share.
struct Site {
    web: Arc<Web>,
    context: Arc<Context>,
    /// Required on every request when set.
    token: Option<String>,
    open: AtomicUsize,
    stopping: AtomicBool,
    /// Every connection's socket and thread, to end them on shutdown.
    connections: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
}

/// The running web server: stop it with [`Running::stop`].
pub(crate) struct Running {
    site: Arc<Site>,
    address: SocketAddr,
    acceptor: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

/// Starts serving `listener` for the server of `context`; the sampler
/// thread feeds the page's counters.
pub(crate) fn start(
    listener: TcpListener,
    web: Arc<Web>,
    context: Arc<Context>,
    token: Option<String>,
) -> io::Result<Running> {
    let address = listener.local_addr()?;
    let site = Arc::new(Site {
        web,
        context,
        token,
        open: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        connections: Mutex::default(),
    });
    let sampling = Arc::clone(&site);
    let sampler = thread::Builder::new().name("web-sampler".into()).spawn(move || {
        let (web, context) = (&sampling.web, &sampling.context);
        metrics::sample(web, &context.traffic, &context.registry, &context.live, &sampling.stopping);
    })?;
    let accepting = Arc::clone(&site);
    // Connection threads are named after the page's port (`web-8080`), so
    // that each server's can be told apart.
    let name = format!("web-{}", address.port());
    let acceptor =
        thread::Builder::new().name("web-accept".into()).spawn(move || accept(&listener, &accepting, &name))?;
    Ok(Running { site, address, acceptor, sampler })
}

impl Running {
    /// Ends every connection and thread of the web server.
    pub(crate) fn stop(self) {
        self.site.stopping.store(true, Ordering::SeqCst);
        self.site.web.close();
        // accept() has no timeout: a connection wakes it.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        let _ = self.acceptor.join();
        let connections = std::mem::take(&mut *lock(&self.site.connections));
        for (socket, thread) in connections {
            let _ = socket.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
        let _ = self.sampler.join();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept(listener: &TcpListener, site: &Arc<Site>, name: &str) {
    for accepted in listener.incoming() {
        if site.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = accepted else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        // Finished connections leave the list as new ones come.
        lock(&site.connections).retain(|(_, thread)| !thread.is_finished());
        if site.open.load(Ordering::SeqCst) >= MAX_WEB_CONNECTIONS {
            let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
            let _ = respond(&mut stream, "503 Service Unavailable", "text/plain", b"too many connections\n");
            continue;
        }
        let Ok(kept) = stream.try_clone() else { continue };
        site.open.fetch_add(1, Ordering::SeqCst);
        let serving = Arc::clone(site);
        match thread::Builder::new().name(name.to_string()).spawn(move || {
            let closing = stream.try_clone();
            if let Err(e) = serve(stream, &serving) {
                debug!("web: {e}");
            }
            // The list holds a handle on the socket too: close it for the browser now.
            if let Ok(socket) = closing {
                let _ = socket.shutdown(Shutdown::Both);
            }
            serving.open.fetch_sub(1, Ordering::SeqCst);
        }) {
            Ok(thread) => lock(&site.connections).push((kept, thread)),
            Err(e) => {
                site.open.fetch_sub(1, Ordering::SeqCst);
                warn!("web: cannot start a connection thread: {e}");
            }
        }
    }
}

/// A request: its path, and its query's `token`.
struct Request {
    path: String,
    token: Option<String>,
}

/// Reads the request head (up to [`MAX_REQUEST_BYTES`], within
/// [`REQUEST_TIMEOUT`] all told — a byte every few seconds does not keep a
/// connection slot) and its first line.
fn read_request(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 || head.len() + n > MAX_REQUEST_BYTES {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (Some("GET"), Some(target)) = (words.next(), words.next()) else { return Ok(None) };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let token = query.split('&').find_map(|pair| pair.strip_prefix("token=")).map(str::to_string);
    Ok(Some(Request { path: path.to_string(), token }))
}

fn serve(mut stream: TcpStream, site: &Site) -> io::Result<()> {
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let Some(request) = read_request(&mut stream)? else {
        return respond(&mut stream, "400 Bad Request", "text/plain", b"only GET requests\n");
    };
    if let Some(token) = &site.token
        && !request.token.as_deref().is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
    {
        return respond(&mut stream, "403 Forbidden", "text/plain", b"this page needs the token the server printed\n");
    }
    match request.path.as_str() {
        "/" => respond(&mut stream, "200 OK", "text/html; charset=utf-8", page(&site.web).as_bytes()),
        "/state" => respond(&mut stream, "200 OK", "application/json", site.web.snapshot().to_string().as_bytes()),
        "/metrics" => {
            let context = &site.context;
            let reading = metrics::read(&context.traffic, &context.registry, &context.live);
            let text = metrics::prometheus(&reading, &site.web);
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", text.as_bytes())
        }
        "/events" => events(stream, site),
        _ => respond(&mut stream, "404 Not Found", "text/plain", b"no such page\n"),
    }
}

/// Compares without stopping at the first difference (the token is a secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// The page, with its style, its script and the present state inside it.
fn page(web: &Web) -> String {
    // Inside a <script> element nothing may look like its end tag.
    let snapshot = web.snapshot().to_string().replace('<', "\\u003c");
    PAGE.replace("/*STYLE*/", STYLE).replace("/*SCRIPT*/", SCRIPT).replace("/*SNAPSHOT*/", &snapshot)
}

/// `/events`: the present first, then every event as it happens, until the
/// browser goes away or the server stops.
fn events(mut stream: TcpStream, site: &Site) -> io::Result<()> {
    let (events, skipped, snapshot) = site.web.watch();
    stream.set_write_timeout(Some(EVENTS_WRITE_TIMEOUT))?;
    #[cfg(unix)]
    let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &EVENTS_SEND_BUFFER);
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes())?;
    write!(stream, "data: {snapshot}\n\n")?;
    let mut told_skipped = 0;
    loop {
        match events.recv_timeout(KEEP_ALIVE) {
            Ok(event) => write!(stream, "data: {event}\n\n")?,
            Err(RecvTimeoutError::Timeout) => stream.write_all(b": still here\n\n")?,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        // Events this browser lost while it was not reading: say how many.
        let lost = skipped.load(Ordering::Relaxed);
        if lost > told_skipped {
            write!(stream, "data: {{\"type\":\"skipped\",\"count\":{lost}}}\n\n")?;
            told_skipped = lost;
        }
    }
}
