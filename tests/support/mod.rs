//! Shared test helpers: an in-process server on a free port, a raw protocol
//! client that records every byte it exchanges, and a pool of RSA identities
//! (key generation is the slow part of every test, so each key is made once
//! per test binary).
#![allow(dead_code)]

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ciphercast::server::{self, Config, Shutdown};
use ciphercast::shared::connection::{FrameWriter, RecvError};
use ciphercast::shared::crypto::{Identity, PeerKey};
use ciphercast::shared::frame::{Frame, FrameError, read_frame};
use ciphercast::shared::limits::{MAX_FRAME_LEN, PROTOCOL_VERSION};
use ciphercast::shared::message::{ClientMessage, ServerMessage, decode};

/// Every test socket gives up after this long instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The i-th identity of a pool shared by all tests of one binary.
pub fn identity(i: usize) -> &'static Identity {
    const POOL: usize = 8;
    static IDS: OnceLock<Vec<OnceLock<Identity>>> = OnceLock::new();
    let pool = IDS.get_or_init(|| (0..POOL).map(|_| OnceLock::new()).collect());
    pool[i % POOL].get_or_init(|| Identity::generate().expect("key generation"))
}

/// A server running in this process on 127.0.0.1, port chosen by the OS.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub fn start(config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = Shutdown::new(&listener).expect("shutdown handle");
        let handle = shutdown.clone();
        let thread = thread::spawn(move || server::run(listener, config, handle));
        TestServer { addr, shutdown, thread: Some(thread) }
    }

    pub fn with_defaults() -> TestServer {
        TestServer::start(Config::default())
    }

    /// Stops the server and waits (bounded) for every thread to end.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shutdown.trigger();
        if let Err(e) = join_bounded("the server", thread) {
            panic!("server ended badly: {e}");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop();
        } else if self.thread.is_some() {
            self.shutdown.trigger();
        }
    }
}

/// Bytes seen on one side of a socket.
pub type Log = Arc<Mutex<Vec<u8>>>;

/// A socket half that copies every byte it moves into a log.
pub struct Recorder {
    stream: TcpStream,
    log: Log,
}

impl Read for Recorder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.log.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.log.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A client speaking the raw protocol, recording what it sends and receives.
///
/// It keeps its own read buffer (rather than a `FrameReader`'s hidden
/// one), so that [`TestClient::has_pending`] can see bytes already read from
/// the socket but not yet taken as a message.
pub struct TestClient {
    pub name: String,
    pub stream: TcpStream,
    reader: BufReader<Recorder>,
    writer: FrameWriter<Recorder>,
    pub sent: Log,
    pub received: Log,
}

/// How a connection ended, as its reader saw it.
#[derive(Debug)]
pub enum End {
    /// A clean end of stream (`read` returned 0) on a frame boundary.
    Closed,
    /// The server reset the connection (it closed with bytes unread).
    Reset(io::Error),
}

impl TestClient {
    /// Connects without saying anything.
    pub fn connect(addr: SocketAddr) -> TestClient {
        TestClient::over(TcpStream::connect(addr).expect("connect"))
    }

    /// Connects from `source`, another loopback address (any of 127.0.0.0/8
    /// works on Linux): a second host, as the server sees it.
    pub fn connect_from(source: std::net::Ipv4Addr, addr: SocketAddr) -> TestClient {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
        use std::os::fd::AsRawFd;
        let SocketAddr::V4(addr) = addr else { panic!("an IPv4 server") };
        let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
        bind(fd.as_raw_fd(), &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0))).expect("bind");
        connect(fd.as_raw_fd(), &SockaddrIn::from(addr)).expect("connect");
        TestClient::over(TcpStream::from(fd))
    }

    fn over(stream: TcpStream) -> TestClient {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let (sent, received) = (Log::default(), Log::default());
        let reader = BufReader::with_capacity(
            64 * 1024,
            Recorder { stream: stream.try_clone().unwrap(), log: Arc::clone(&received) },
        );
        let writer = FrameWriter::new(Recorder { stream: stream.try_clone().unwrap(), log: Arc::clone(&sent) });
        TestClient { name: "(not joined)".into(), stream, reader, writer, sent, received }
    }

    /// Connects and says hello with `key`'s public half; returns the first reply.
    pub fn hello(addr: SocketAddr, name: &str, public_key: &str) -> (TestClient, ServerMessage) {
        let mut client = TestClient::connect(addr);
        client.name = name.to_string();
        client.send(&hello(name, public_key));
        let reply = client.recv();
        (client, reply)
    }

    /// Joins as `name` with identity `key`; panics unless welcomed. Returns the welcome's peers.
    pub fn join(addr: SocketAddr, name: &str, key: &Identity) -> (TestClient, Vec<String>) {
        match TestClient::hello(addr, name, key.public_pem()) {
            (client, ServerMessage::Welcome { peers, .. }) => {
                (client, peers.iter().map(|p| p.name.to_string()).collect())
            }
            (_, other) => panic!("{name} was not welcomed: {other:?}"),
        }
    }

    pub fn send(&mut self, message: &ClientMessage) {
        self.writer.send(message).expect("send");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_encoded(bytes).expect("send raw");
        self.writer.flush().expect("flush");
    }

    /// Writes bytes straight to the socket, returning the error instead of
    /// panicking: for clients the server may already have cut off.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next frame, or the error that ended the stream.
    pub fn try_read_frame(&mut self) -> Result<Frame, FrameError> {
        read_frame(&mut self.reader, MAX_FRAME_LEN)
    }

    /// The next control message; panics on timeout or close.
    pub fn recv(&mut self) -> ServerMessage {
        match self.try_recv() {
            Ok(message) => message,
            Err(e) => panic!("{}: expected a message, got {e}", self.name),
        }
    }

    /// The next frame of any kind; panics on timeout or close.
    pub fn read_frame(&mut self) -> Frame {
        match self.try_read_frame() {
            Ok(frame) => frame,
            Err(e) => panic!("{}: expected a frame, got {e}", self.name),
        }
    }

    /// The next control message, or the error that ended the stream.
    pub fn try_recv(&mut self) -> Result<ServerMessage, RecvError> {
        let frame = self.try_read_frame()?;
        Ok(decode::<ServerMessage>(&frame)?)
    }

    /// Whether a message (or the end of the stream) is waiting, without
    /// blocking: bytes already in this client's buffer count, and so do
    /// bytes waiting in the socket.
    pub fn has_pending(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        self.stream.set_nonblocking(true).expect("set nonblocking");
        let peeked = self.stream.peek(&mut [0u8; 1]);
        self.stream.set_nonblocking(false).expect("set blocking");
        match peeked {
            Ok(_) => true, // a byte, or the end of the stream
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => true, // a reset: the next read reports it
        }
    }

    /// Reads until a message satisfies `wanted` (at most 1000 messages).
    pub fn recv_until(&mut self, what: &str, mut wanted: impl FnMut(&ServerMessage) -> bool) -> ServerMessage {
        let started = Instant::now();
        for _ in 0..1000 {
            let message = self.recv();
            if wanted(&message) {
                return message;
            }
            assert!(started.elapsed() < TIMEOUT, "{}: no {what} within {TIMEOUT:?}", self.name);
        }
        panic!("{}: no {what} within 1000 messages", self.name);
    }

    /// Reads frames until the server ends the connection — a real end of
    /// stream or a reset, never a read timeout: a connection that stays open
    /// and silent fails the test. At most `max_frames` frames and
    /// [`TIMEOUT`] in all; returns the frames and how the stream ended.
    pub fn frames_until_closed(&mut self, max_frames: usize) -> (Vec<Frame>, End) {
        let deadline = Instant::now() + TIMEOUT;
        let mut frames = Vec::new();
        while frames.len() < max_frames {
            assert!(Instant::now() < deadline, "{}: connection still open after {TIMEOUT:?}", self.name);
            match self.try_read_frame() {
                Ok(frame) => frames.push(frame),
                Err(FrameError::Closed) => return (frames, End::Closed),
                Err(FrameError::Io(e)) if is_reset(&e) => return (frames, End::Reset(e)),
                Err(FrameError::Io(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    panic!(
                        "{}: the server did not close the connection: nothing for {TIMEOUT:?} after {} frame(s) \
                         (read timed out)",
                        self.name,
                        frames.len()
                    )
                }
                Err(e) => panic!("{}: the connection broke instead of closing: {e}", self.name),
            }
        }
        panic!("{}: connection not closed after {max_frames} frames", self.name);
    }

    /// Reads until the server ends the connection (see
    /// [`frames_until_closed`](Self::frames_until_closed)); returns the
    /// control messages before the end. Panics on anything else.
    pub fn recv_until_closed(&mut self) -> Vec<ServerMessage> {
        let (frames, _) = self.frames_until_closed(1000);
        let messages = frames.iter().map(decode::<ServerMessage>).collect::<Result<Vec<_>, _>>();
        messages.unwrap_or_else(|e| panic!("{}: not a control message before the close: {e}", self.name))
    }

    /// Reads and discards everything until the server ends the connection —
    /// cleanly, by a reset, or in the middle of a frame (a client cut off
    /// for not reading may lose the end of what was being written to it) —
    /// never a read timeout. At most `max_bytes`; returns the bytes read.
    pub fn drain_until_closed(&mut self, max_bytes: usize) -> usize {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        while total < max_bytes {
            assert!(Instant::now() < deadline, "{}: connection still open after {TIMEOUT:?}", self.name);
            match self.reader.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) if is_reset(&e) => return total,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    panic!(
                        "{}: the server did not close the connection: nothing for {TIMEOUT:?} after {total} bytes \
                         (read timed out)",
                        self.name
                    )
                }
                Err(e) => panic!("{}: read failed: {e}", self.name),
            }
        }
        panic!("{}: connection not closed after {max_bytes} bytes", self.name);
    }
}

/// Whether a read error means the peer reset the connection.
fn is_reset(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe)
}

/// A hello for `name` with `public_key`.
pub fn hello(name: &str, public_key: &str) -> ClientMessage {
    ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.into(), public_key: public_key.into() }
}

/// Waits for a condition that no message announces (a socket closed, a
/// place freed), checking every 20 ms. [`TIMEOUT`] is a hang bound, not a
/// speed check: only a bug makes the wait reach it.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Joins a thread the test started, failing the test (instead of hanging
/// it) if the thread has not ended within [`TIMEOUT`].
pub fn join_bounded<T: Send + 'static>(what: &str, thread: JoinHandle<T>) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(thread.join());
    });
    match done_rx.recv_timeout(TIMEOUT) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what} did not end within {TIMEOUT:?}"),
    }
}

/// An envelope the server will relay (it cannot tell it is not real
/// ciphertext): for floods and captures.
pub fn fake_envelope(to: &str, id: String, ciphertext_len: usize) -> ciphercast::shared::message::Envelope {
    ciphercast::shared::message::Envelope {
        id,
        to: to.into(),
        sent_at: 0,
        wrapped_key: vec![0; 256],
        nonce: vec![0; 12],
        ciphertext: vec![0x5a; ciphertext_len],
        signature: vec![0; 256],
    }
}

/// A peer's key as a client would hold it.
pub fn peer_key(identity: &Identity) -> PeerKey {
    PeerKey::from_pem(identity.public_pem()).expect("valid key")
}

/// The `ciphercast` binary run as a child process with piped stdio, its
/// output collected line by line by two threads.
pub struct Process {
    pub child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<(Stream, String)>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

impl Process {
    /// Starts `ciphercast ARGS…` with piped stdin, stdout and stderr.
    pub fn start(args: &[&str]) -> Process {
        Process::start_command(std::process::Command::new(env!("CARGO_BIN_EXE_ciphercast")).args(args))
    }

    /// Starts any command with piped stdin, stdout and stderr. Unless the
    /// test chose one, the process gets a configuration directory of its own
    /// (`XDG_CONFIG_HOME`), fresh and empty: a client's keys never reach the
    /// real home directory, and no two processes share theirs by accident.
    pub fn start_command(command: &mut std::process::Command) -> Process {
        use std::process::Stdio;
        if !command.get_envs().any(|(key, _)| key == "XDG_CONFIG_HOME") {
            command.env("XDG_CONFIG_HOME", fresh_config_dir());
        }
        let mut child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ciphercast");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (which, pipe) in [(Stream::Out, Box::new(out) as Box<dyn Read + Send>), (Stream::Err, Box::new(err))] {
            let tx = tx.clone();
            thread::spawn(move || {
                use std::io::BufRead;
                for line in io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((which, line)).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Process { child, stdin, lines, stdout: Vec::new(), stderr: Vec::new() }
    }

    /// Starts `ciphercast server --port 0 ARGS…` and returns it with the
    /// address it logged (`listening on …`).
    pub fn server(args: &[&str]) -> (Process, SocketAddr) {
        let mut all = vec!["server", "--port", "0"];
        all.extend_from_slice(args);
        let mut server = Process::start(&all);
        let line = server.wait_for(Stream::Err, "listening on ");
        let address = line.split("listening on ").nth(1).and_then(|rest| rest.split_whitespace().next());
        let address = address.and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no address in {line:?}"));
        (server, address)
    }

    /// Types `text` into the client's stdin.
    pub fn type_text(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes stdin: end of input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn take(&mut self, (which, line): (Stream, String)) -> String {
        match which {
            Stream::Out => self.stdout.push(line.clone()),
            Stream::Err => self.stderr.push(line.clone()),
        }
        line
    }

    /// Like [`Process::wait_for`], but only for a line not seen yet (a prompt
    /// that repeats, say).
    pub fn wait_for_next(&mut self, which: Stream, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok((w, line)) => {
                    let line = self.take((w, line));
                    if w == which && line.contains(text) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no new {which:?} line containing {text:?}\nstdout: {:#?}\nstderr: {:#?}", self.stdout, self.stderr);
    }

    /// Waits until a line of `which` contains `text`; returns that line.
    pub fn wait_for(&mut self, which: Stream, text: &str) -> String {
        let seen = |lines: &Vec<String>| lines.iter().find(|l| l.contains(text)).cloned();
        if let Some(line) = seen(if which == Stream::Out { &self.stdout } else { &self.stderr }) {
            return line;
        }
        self.wait_for_next(which, text)
    }

    /// Waits (bounded) for the process to exit and collects the rest of its output.
    pub fn finish(&mut self) -> i32 {
        self.close_stdin();
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not exit\nstdout: {:#?}\nstderr: {:#?}", self.stdout, self.stderr);
            }
            thread::sleep(Duration::from_millis(20));
        };
        // The pipes close when the process is gone; drain what is left.
        while let Ok(item) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.take(item);
        }
        status.code().unwrap_or(-1)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new, empty directory for one process's configuration.
pub fn fresh_config_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ciphercast-config-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("config dir");
    dir
}

/// Tiny generated clips, made once per test binary: Video_1 and Video_2 at
/// 24p, 48p and 96p, `seconds` long at 10 fps, in their own directory.
pub fn clips(seconds: u32) -> std::path::PathBuf {
    clips_at(seconds, &[24, 48, 96])
}

/// Generated clips at the given heights, 10 fps, made once per test binary.
pub fn clips_at(seconds: u32, heights: &[u32]) -> std::path::PathBuf {
    use std::collections::HashMap;
    type ClipDirs = Mutex<HashMap<(u32, Vec<u32>), std::path::PathBuf>>;
    static DIRS: OnceLock<ClipDirs> = OnceLock::new();
    let dirs = DIRS.get_or_init(Default::default);
    let mut dirs = dirs.lock().unwrap();
    dirs.entry((seconds, heights.to_vec()))
        .or_insert_with(|| {
            let tag: Vec<String> = heights.iter().map(u32::to_string).collect();
            let dir = std::env::temp_dir().join(format!(
                "ciphercast-clips-{}-{seconds}s-{}",
                std::process::id(),
                tag.join("-")
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let spec = ciphercast::videos::Spec {
                out: dir.clone(),
                seconds: f64::from(seconds),
                fps: 10.0,
                heights: heights.to_vec(),
            };
            ciphercast::videos::generate(&spec).expect("generate clips");
            dir
        })
        .clone()
}

/// The summary line a playback ends with, every field parsed (INTERFACE.md):
/// `summary: video=V frames=R/T resolutions=L fps=F bytes=B late=N`, then
/// only the optional ` dropped=N` and ` last=RES`.
pub struct Summary {
    pub video: String,
    pub received: u32,
    pub total: u32,
    pub resolutions: String,
    pub fps: f64,
    pub bytes: u64,
    pub late: u32,
    /// With the adaptive plan: the last frame's resolution.
    pub last: Option<String>,
}

impl Summary {
    pub fn parse(line: &str) -> Summary {
        let fields = line.strip_prefix("summary: ").unwrap_or_else(|| panic!("not a summary line: {line:?}"));
        let fields: Vec<(&str, &str)> = fields
            .split(' ')
            .map(|field| field.split_once('=').unwrap_or_else(|| panic!("{field:?} is not key=value in {line:?}")))
            .collect();
        let keys: Vec<&str> = fields.iter().map(|(key, _)| *key).collect();
        let fixed = ["video", "frames", "resolutions", "fps", "bytes", "late"];
        assert_eq!(keys[..keys.len().min(6)], fixed, "fields of {line:?}");
        assert!(keys[6..].iter().all(|key| ["dropped", "last"].contains(key)), "unknown fields in {line:?}");
        let value = |key: &str| fields.iter().find(|(k, _)| *k == key).unwrap().1;
        let number = |key: &str| value(key).parse::<u64>().unwrap_or_else(|e| panic!("{key} in {line:?}: {e}"));
        let (received, total) = value("frames").split_once('/').unwrap_or_else(|| panic!("frames in {line:?}"));
        let fps = value("fps");
        assert!(fps.split_once('.').is_some_and(|(_, decimals)| decimals.len() == 1), "fps {fps:?} in {line:?}");
        if keys.contains(&"dropped") {
            number("dropped");
        }
        Summary {
            video: value("video").to_string(),
            received: received.parse().unwrap_or_else(|e| panic!("frames in {line:?}: {e}")),
            total: total.parse().unwrap_or_else(|e| panic!("frames in {line:?}: {e}")),
            resolutions: value("resolutions").to_string(),
            fps: fps.parse().unwrap_or_else(|e| panic!("fps in {line:?}: {e}")),
            bytes: number("bytes"),
            late: u32::try_from(number("late")).unwrap(),
            last: keys.contains(&"last").then(|| value("last").to_string()),
        }
    }
}
