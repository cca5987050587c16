//! The bench's synthetic clients: each joins with the real protocol and has
//! one reader thread (named `bench-NAME`) that keeps a registry, counts the
//! bytes the server sent, and reports arrivals to the phase on the main
//! thread through a channel. The main thread (or a phase's sender threads)
//! write on the socket; the reader thread only reads, so the two halves of
//! each socket are never shared behind a lock. A phase may ask for its
//! readers to run at the lowest priority ([`Tally::in_background`]).

use std::collections::BTreeMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use ciphercast::shared::connection::{FrameReader, FrameWriter};
use ciphercast::shared::crypto::{Fingerprint, Identity};
use ciphercast::shared::frame::{FrameKind, HEADER_LEN};
use ciphercast::shared::limits::{CLIENT_READ_BUFFER, MAX_FRAME_LEN, PROTOCOL_VERSION};
use ciphercast::shared::message::{ClientMessage, ServerMessage, VideoInfo, decode};
use ciphercast::shared::names::validate_name;
use ciphercast::shared::video::FrameHeader;

use super::server_process::ServerProcess;

/// What a synthetic client's reader thread reports.
pub(super) enum Report {
    /// Its registry holds at least the target count.
    Complete,
    /// A sealed message addressed to this client arrived (its id), and when.
    Sealed(String, Instant),
    /// A stream ended; every frame that arrived.
    Stream { frames: Vec<Arrival>, announced: u32, fps: f64 },
    /// The video library, as `video_list` gave it.
    List(Vec<VideoInfo>),
}

/// One video frame as a synthetic viewer received it.
pub(super) struct Arrival {
    /// When it arrived.
    pub(super) at: Instant,
    /// Its presentation time, µs.
    pub(super) pts: u64,
    /// Its frame number.
    pub(super) sequence: u32,
}

/// What every synthetic client of a phase shares: the registry size to
/// report, a count of the bytes the server sent them, and where to report.
#[derive(Clone)]
pub(super) struct Tally {
    /// Atomic so a phase can raise it while the readers run (see `bytes_for_join`).
    target: Arc<AtomicUsize>,
    received: Arc<AtomicU64>,
    reports: Sender<Report>,
    /// Whether the readers run at the lowest priority (see [`Tally::in_background`]).
    background: bool,
}

impl Tally {
    /// A tally whose clients report when their registry holds `target`
    /// peers, and the receiving end of their reports. The channel is
    /// unbounded so that a reader never waits for the main thread: the
    /// reports of a phase are few (one per client, or one per message).
    pub(super) fn new(target: usize) -> (Tally, Receiver<Report>) {
        let (reports, receiver) = unbounded();
        let tally =
            Tally { target: Arc::new(AtomicUsize::new(target)), received: Arc::default(), reports, background: false };
        (tally, receiver)
    }

    /// The same tally, whose readers run at the lowest priority (nice 19,
    /// on Linux): clients that stand for a class's own machines, which in a
    /// classroom do not share the server's cores. In `chat.concurrent` a
    /// hundred of them read some 700 000 copies a second; at the server's
    /// priority they took the cores from the server's threads and from the
    /// addressees' readers, and the tail measured was the bench's (the
    /// 4-sender p99 over a day's runs: 2.08 ms against 1.48,
    /// `docs/BENCHMARKS.md`).
    pub(super) fn in_background(self) -> Tally {
        Tally { background: true, ..self }
    }

    /// From now on, report when the registry holds `target` peers.
    pub(super) fn set_target(&self, target: usize) {
        self.target.store(target, Ordering::SeqCst);
    }

    /// Bytes the server sent to every client of this tally so far, frame headers included.
    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

/// A joined synthetic client: its socket and its reader thread. Dropping it
/// closes the socket, which ends the reader, and waits for it.
pub(super) struct Member {
    stream: TcpStream,
    writer: FrameWriter<TcpStream>,
    reader: Option<JoinHandle<()>>,
}

impl Member {
    /// Connects and joins as `name`; the reader thread keeps a registry and
    /// reports when it holds the tally's target of peers (read at each update).
    pub(super) fn join(address: SocketAddr, name: String, key: &Identity, tally: Tally) -> Result<Member, String> {
        let stream = TcpStream::connect(address).map_err(|e| format!("{name}: cannot connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let reader_half = stream.try_clone().map_err(|e| e.to_string())?;
        let mut writer = FrameWriter::new(stream.try_clone().map_err(|e| e.to_string())?);
        let hello =
            ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.clone(), public_key: key.public_pem().into() };
        writer.send(&hello).map_err(|e| format!("{name}: {e}"))?;
        let reader = thread::Builder::new()
            .name(format!("bench-{name}"))
            .stack_size(256 * 1024)
            .spawn(move || read_loop(reader_half, tally, name))
            .map_err(|e| e.to_string())?;
        Ok(Member { stream, writer, reader: Some(reader) })
    }

    /// Sends one message to the server.
    pub(super) fn send(&mut self, message: &ClientMessage) -> Result<(), String> {
        self.writer.send(message).map_err(|e| e.to_string())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A synthetic client's copy of the registry. It does with every entry what
/// the real client's registry (`client::peers`, private to the library)
/// does on arrival, so the bench's clients cost what real clients cost:
/// validate the name, fingerprint the key (SHA-256 of its DER), remember
/// the first fingerprint seen under each name (trust on first use), and
/// keep the entry in a map. One thing it skips: the real client parses a
/// key it has not trusted before (11 µs, so 11 ms for a class of a
/// thousand, on each student's machine); a thousand synthetic clients
/// sharing two cores would pay 11 s between them, and measure that instead
/// of the server.
#[derive(Default)]
struct Registry {
    /// Who is connected: each peer's key and its fingerprint.
    entries: BTreeMap<String, (Arc<str>, Fingerprint)>,
    /// The fingerprint first seen under each name; kept when a peer leaves.
    trusted: BTreeMap<String, Fingerprint>,
}

impl Registry {
    /// Records a peer; an entry the real client would refuse (a bad name,
    /// not a PEM key) is dropped, as there.
    fn insert(&mut self, name: &str, pem: Arc<str>) {
        if validate_name(name).is_err() {
            return;
        }
        let Some(fingerprint) = Fingerprint::of_pem(&pem) else { return };
        if !self.trusted.contains_key(name) {
            self.trusted.insert(name.to_string(), fingerprint);
        }
        self.entries.insert(name.to_string(), (pem, fingerprint));
    }

    /// Forgets a peer that left (its trusted fingerprint is kept).
    fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// How many peers are connected.
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The reader thread of the synthetic client `me`: reads until the socket closes.
fn read_loop(stream: TcpStream, tally: Tally, me: String) {
    let Tally { target, received, reports, background } = tally;
    if background {
        lowest_priority();
    }
    let mut reader = FrameReader::with_buffer(stream, MAX_FRAME_LEN, CLIENT_READ_BUFFER);
    let mut peers = Registry::default();
    let mut reported = usize::MAX;
    let mut frames = Vec::new();
    let (mut announced, mut fps) = (0, 0.0);
    while let Ok(frame) = reader.next_frame() {
        received.fetch_add((frame.payload.len() + HEADER_LEN) as u64, Ordering::Relaxed);
        if frame.kind == FrameKind::Video {
            if let Ok((header, _)) = FrameHeader::decode(&frame.payload) {
                frames.push(Arrival { at: Instant::now(), pts: header.pts_micros, sequence: header.sequence });
            }
            continue;
        }
        if is_someone_elses(&frame.payload, &me) {
            continue;
        }
        let Ok(message) = decode::<ServerMessage>(frame) else { continue };
        match message {
            ServerMessage::Welcome { peers: list, .. } => {
                for peer in list {
                    peers.insert(&peer.name, peer.public_key);
                }
            }
            ServerMessage::PeerJoined { name, public_key } => {
                peers.insert(&name, public_key);
            }
            ServerMessage::PeerLeft { name, .. } => peers.remove(&name),
            ServerMessage::Sealed { envelope, .. } if envelope.to == me => {
                let _ = reports.send(Report::Sealed(envelope.id, Instant::now()));
            }
            ServerMessage::StreamStart { frames: count, fps: rate, .. } => {
                (announced, fps) = (count, rate);
                frames.clear();
            }
            ServerMessage::StreamEnd { .. } => {
                let _ = reports.send(Report::Stream { frames: std::mem::take(&mut frames), announced, fps });
            }
            ServerMessage::VideoList { videos } => {
                let _ = reports.send(Report::List(videos));
            }
            _ => {}
        }
        let wanted = target.load(Ordering::Relaxed);
        if peers.len() >= wanted && reported != wanted {
            reported = wanted;
            let _ = reports.send(Report::Complete);
        }
    }
}

/// Lowers the calling thread to nice 19; elsewhere than Linux, or if the
/// system refuses, the thread keeps its priority.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
}

/// Whether a control frame is a sealed message for someone else: its
/// `type` and `to` read without decoding the rest. Only frames that begin
/// as the server writes a sealed message (its tag first) are peeked at, so
/// a join announcement is not parsed twice; any other frame, in any field
/// order, goes to the full decode, which is right for all of them.
///
/// The real client decodes such a copy in full (about 4 µs: base64 of the
/// wrapped key, nonce, ciphertext and signature) to print one line for it,
/// on the student's own machine. In `chat.concurrent` the bench's hundred
/// clients would decode 400 000 copies a second on the two cores the server
/// runs on — three times the server's own CPU time, measured — and the
/// figure would be the bench's. The addressee decodes its copy in full.
fn is_someone_elses(payload: &[u8], me: &str) -> bool {
    if !payload.starts_with(br#"{"type":"sealed""#) {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        envelope: Option<To<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct To<'a> {
        #[serde(borrow)]
        to: std::borrow::Cow<'a, str>,
    }
    match serde_json::from_slice::<Peek>(payload) {
        Ok(Peek { kind, envelope: Some(envelope) }) => kind == "sealed" && envelope.to != me,
        _ => false,
    }
}

/// Joins a member named `prefixI` for each I of `numbers`, 100 at a time
/// (one short-lived thread each, as a class connecting together); each
/// reports when its registry holds the tally's target of peers.
pub(super) fn join_many(
    server: &ServerProcess,
    prefix: &str,
    numbers: Range<usize>,
    keys: &[Identity],
    tally: &Tally,
) -> Result<Vec<Member>, String> {
    let mut members = Vec::with_capacity(numbers.len());
    for batch in numbers.collect::<Vec<_>>().chunks(100) {
        let joined: Vec<Result<Member, String>> = thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|&i| {
                    let (tally, key) = (tally.clone(), &keys[i % keys.len()]);
                    scope.spawn(move || Member::join(server.address, format!("{prefix}{i}"), key, tally))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("join thread panicked".into()))).collect()
        });
        for member in joined {
            members.push(member?);
        }
    }
    Ok(members)
}

/// Waits until `count` completion reports arrive (bounded by `limit`).
pub(super) fn await_complete(reports: &Receiver<Report>, count: usize, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut done = 0;
    while done < count {
        let left = deadline.checked_duration_since(Instant::now()).ok_or("registries incomplete: timed out")?;
        match reports.recv_timeout(left) {
            Ok(Report::Complete) => done += 1,
            Ok(_) => {}
            Err(_) => return Err(format!("only {done} of {count} registries completed")),
        }
    }
    Ok(())
}
