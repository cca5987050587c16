//! `ciphercast bench`: measures what each kind of work costs.
//!
//! The real server runs as a separate process on loopback (a fresh one per
//! phase), so its CPU time and memory can be read from `/proc`. Synthetic
//! clients in this process speak the real protocol, one thread each, and
//! keep their registries with the client's own registry code. Keys come from
//! a small pre-generated pool (the server does not require distinct keys).
//!
//! Phases: joins (time until every registry is complete; the server's bytes
//! per join), chat latency (idle, and with video streams running), the cost
//! of sealing and opening, concurrent real-time viewers (one video, and
//! distinct cold videos), and server memory per idle client. Results go to
//! `target/bench/results.json`. `--quick` runs small counts and checks
//! outcomes only; it runs inside `make test`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde_json::{Value, json};

use crate::cli::BenchPhase;
use crate::client::peers::{KnownPeers, Peers};
use crate::shared::connection::{FrameReader, FrameWriter};
use crate::shared::crypto::{Identity, PeerKey};
use crate::shared::frame::FrameKind;
use crate::shared::limits::{CLIENT_READ_BUFFER, DEFAULT_JPEG_QUALITY, MAX_FRAME_LEN, PROTOCOL_VERSION};
use crate::shared::message::{ClientMessage, Envelope, ServerMessage, decode};
use crate::shared::video::{FrameHeader, Pace};
use crate::videos;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Small counts, outcomes only (for `make test`).
    pub quick: bool,
    /// One phase only (results to `results-PHASE.json`).
    pub only: Option<BenchPhase>,
}

/// The counts of one run.
struct Plan {
    join_clients: usize,
    join_checkpoints: Vec<usize>,
    chat_clients: usize,
    chat_messages: usize,
    chat_streams: usize,
    same_video_steps: Vec<usize>,
    cold_steps: Vec<usize>,
    video_seconds: f64,
    heights: Vec<u32>,
    key_pool: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                join_clients: 20,
                join_checkpoints: vec![10],
                chat_clients: 10,
                chat_messages: 20,
                chat_streams: 2,
                same_video_steps: vec![2],
                cold_steps: vec![2],
                video_seconds: 1.0,
                heights: vec![24, 48, 96],
                key_pool: 2,
            }
        } else {
            Plan {
                join_clients: 1000,
                join_checkpoints: vec![10, 100, 1000],
                chat_clients: 100,
                chat_messages: 1000,
                chat_streams: 20,
                same_video_steps: vec![10, 25, 50, 100, 200, 300, 400],
                cold_steps: vec![1, 2, 3, 4, 6, 8],
                video_seconds: 3.0,
                heights: vec![240, 720, 1440],
                key_pool: 8,
            }
        }
    }
}

/// Where results and bench videos go: `CIPHERCAST_BENCH_DIR`, or
/// `target/bench` under the repository root.
pub fn output_dir() -> PathBuf {
    std::env::var_os("CIPHERCAST_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench"))
}

/// Runs every phase, prints the table, writes `results.json`; returns its path.
pub fn run(options: Options) -> Result<PathBuf, String> {
    let plan = Plan::new(options.quick);
    let dir = output_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    raise_open_file_limit();
    let videos = prepare_videos(&dir, &plan)?;

    eprintln!("bench: generating {} keys", plan.key_pool);
    let mut keygen_ms = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..plan.key_pool {
        let started = Instant::now();
        keys.push(Identity::generate().map_err(|e| e.to_string())?);
        keygen_ms.push(ms(started.elapsed()));
    }
    let keys = Arc::new(keys);

    let wanted = |phase: BenchPhase| options.only.is_none_or(|only| only == phase);
    let (mut join, mut server_memory, mut chat, mut viewers) = (Value::Null, Value::Null, Value::Null, Value::Null);
    if wanted(BenchPhase::Join) {
        eprintln!("bench: joins");
        (join, server_memory) = bench_joins(&plan, &keys, &videos)?;
    }
    if wanted(BenchPhase::Chat) {
        eprintln!("bench: chat");
        chat = bench_chat(&plan, &keys, &videos, keygen_ms)?;
    }
    if wanted(BenchPhase::Viewers) {
        eprintln!("bench: viewers");
        viewers = bench_viewers(&plan, &keys, &videos)?;
    }

    let results = json!({
        "machine": machine(),
        "quick": options.quick,
        "join": join,
        "chat": chat,
        "viewers": viewers,
        "server": server_memory,
    });
    print_table(&results);
    let path = match options.only {
        Some(phase) => dir.join(format!("results-{}.json", format!("{phase:?}").to_lowercase())),
        None => dir.join("results.json"),
    };
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    fs::write(&path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

// ---------------------------------------------------------------- server

/// The server binary (this executable) running on a free loopback port.
struct ServerProcess {
    child: Child,
    address: SocketAddr,
}

impl ServerProcess {
    fn start(videos: &Path, max_clients: usize) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["server", "--bind", "127.0.0.1", "--port", "0", "--max-clients", &max_clients.to_string()])
            .arg("--videos")
            .arg(videos)
            .env("RUST_LOG", "info/listening on")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let stderr = child.stderr.take().ok_or("no server stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.split("listening on ").nth(1)
                        && let Some(address) = rest.split_whitespace().next().and_then(|a| a.parse().ok())
                    {
                        break address;
                    }
                }
                _ => {
                    let _ = child.kill();
                    return Err("the server did not start".into());
                }
            }
        };
        // Keep draining its stderr so it never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        Ok(ServerProcess { child, address })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) of a process, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 1000.0 / 100.0
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            // Children (the server) inherit the raised limit.
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

// ---------------------------------------------------------------- clients

/// What a synthetic client's reader thread reports.
enum Report {
    /// Its registry holds at least the target count.
    Complete,
    /// A sealed message arrived (its id).
    Sealed(String, Instant),
    /// A stream ended; the arrival time and presentation time of every frame.
    Stream { frames: Vec<(Instant, u64)>, announced: u32, fps: f64 },
}

/// What every synthetic client of a phase shares: the registry size to
/// report, a count of the bytes the server sent them, and where to report.
#[derive(Clone)]
struct Tally {
    target: Arc<AtomicUsize>,
    received: Arc<AtomicU64>,
    reports: Sender<Report>,
}

impl Tally {
    fn new(target: usize) -> (Tally, Receiver<Report>) {
        let (reports, receiver) = unbounded();
        let tally = Tally { target: Arc::new(AtomicUsize::new(target)), received: Arc::default(), reports };
        (tally, receiver)
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

/// A joined synthetic client: its socket and its reader thread.
struct Member {
    stream: TcpStream,
    writer: FrameWriter<TcpStream>,
    reader: Option<JoinHandle<()>>,
}

impl Member {
    /// Connects and joins as `name`; the reader thread keeps a registry and
    /// reports when it holds the tally's target of peers (read at each update).
    fn join(address: SocketAddr, name: String, key: &Identity, tally: Tally) -> Result<Member, String> {
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
            .spawn(move || read_loop(reader_half, tally))
            .map_err(|e| e.to_string())?;
        Ok(Member { stream, writer, reader: Some(reader) })
    }

    fn send(&mut self, message: &ClientMessage) -> Result<(), String> {
        self.writer.send(message).map_err(|e| e.to_string())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn read_loop(stream: TcpStream, tally: Tally) {
    let Tally { target, received, reports } = tally;
    let mut reader = FrameReader::with_buffer(stream, MAX_FRAME_LEN, CLIENT_READ_BUFFER);
    let mut peers = Peers::new(KnownPeers::default());
    let mut reported = usize::MAX;
    let mut frames = Vec::new();
    let (mut announced, mut fps) = (0, 0.0);
    while let Ok(frame) = reader.next_frame() {
        received.fetch_add(frame.payload.len() as u64 + 5, Ordering::Relaxed);
        if frame.kind == FrameKind::Video {
            if let Ok((header, _)) = FrameHeader::decode(&frame.payload) {
                frames.push((Instant::now(), header.pts_micros));
            }
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
            ServerMessage::Sealed { envelope, .. } => {
                let _ = reports.send(Report::Sealed(envelope.id, Instant::now()));
            }
            ServerMessage::StreamStart { frames: count, fps: rate, .. } => {
                (announced, fps) = (count, rate);
                frames.clear();
            }
            ServerMessage::StreamEnd { .. } => {
                let _ = reports.send(Report::Stream { frames: std::mem::take(&mut frames), announced, fps });
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

/// Joins `count` members named `prefix0…`, 100 at a time; each reports when
/// its registry holds `target` peers.
fn join_many(
    server: &ServerProcess,
    prefix: &str,
    count: usize,
    keys: &[Identity],
    tally: &Tally,
) -> Result<Vec<Member>, String> {
    let mut members = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(100) {
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

/// Waits until `count` completion reports arrive (bounded).
fn await_complete(reports: &Receiver<Report>, count: usize, limit: Duration) -> Result<(), String> {
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

// ---------------------------------------------------------------- phases

fn bench_joins(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path) -> Result<(Value, Value), String> {
    let n = plan.join_clients;
    let server = ServerProcess::start(videos, n + 16)?;
    thread::sleep(Duration::from_millis(200));
    let rss_before = rss_kib(server.pid());
    let (tally, completions) = Tally::new(n - 1);
    let (server_cpu_before, own_cpu_before) = (cpu_ms(server.pid()), cpu_ms(std::process::id()));
    let started = Instant::now();
    let members = join_many(&server, "c", n, keys, &tally)?;
    await_complete(&completions, n, Duration::from_secs(120))?;
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu = cpu_ms(server.pid()) - server_cpu_before;
    let clients_cpu = cpu_ms(std::process::id()) - own_cpu_before;
    thread::sleep(Duration::from_millis(300));
    let rss_per_client = (rss_kib(server.pid()) - rss_before) / n as f64;
    let total_bytes = tally.received();
    drop(members);
    drop(server);

    let mut per_join = serde_json::Map::new();
    for &checkpoint in &plan.join_checkpoints {
        per_join.insert(checkpoint.to_string(), json!(bytes_for_join(checkpoint, keys, videos)?));
    }
    let join = json!({
        "clients": n,
        "seconds": seconds,
        "server_bytes": total_bytes,
        "server_cpu_ms": server_cpu,
        "clients_cpu_ms": clients_cpu,
        "bytes_per_join_at": per_join,
    });
    let memory = json!({ "rss_kib_per_idle_client": rss_per_client });
    Ok((join, memory))
}

/// Server bytes written for the `n`-th join: n−1 clients are joined, one more
/// joins, and everyone's registry is complete again.
fn bytes_for_join(n: usize, keys: &Arc<Vec<Identity>>, videos: &Path) -> Result<f64, String> {
    let server = ServerProcess::start(videos, n + 16)?;
    let (tally, completions) = Tally::new(n - 2);
    let mut members = join_many(&server, "m", n - 1, keys, &tally)?;
    await_complete(&completions, n - 1, Duration::from_secs(120))?;
    tally.target.store(n - 1, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(100));
    let before = tally.received();
    members.push(Member::join(server.address, "newcomer".into(), &keys[0], tally.clone())?);
    await_complete(&completions, n, Duration::from_secs(60))?;
    thread::sleep(Duration::from_millis(50));
    Ok((tally.received() - before) as f64)
}

fn bench_chat(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path, keygen_ms: Vec<f64>) -> Result<Value, String> {
    let (seal, open) = crypto_costs(keys)?;
    let idle = chat_latency(plan, keys, videos, 0)?;
    let streams = chat_latency(plan, keys, videos, plan.chat_streams)?;
    Ok(json!({
        "idle": idle,
        "streams": streams,
        "crypto_ms": { "seal": seal, "open": open, "keygen_median": median(keygen_ms) },
    }))
}

fn crypto_costs(keys: &Arc<Vec<Identity>>) -> Result<(f64, f64), String> {
    let (alice, bob) = (&keys[0], &keys[1 % keys.len()]);
    let bob_key = PeerKey::from_pem(bob.public_pem()).map_err(|e| e.to_string())?;
    let alice_key = PeerKey::from_pem(alice.public_pem()).map_err(|e| e.to_string())?;
    let (mut seal, mut open) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let started = Instant::now();
        let envelope =
            alice.seal("alice", "bob", &bob_key, "a line of chat, as typed in class").map_err(|e| e.to_string())?;
        seal.push(ms(started.elapsed()));
        let started = Instant::now();
        bob.open("alice", &alice_key, &envelope).map_err(|e| e.to_string())?;
        open.push(ms(started.elapsed()));
    }
    Ok((median(seal), median(open)))
}

/// One-way relay latency of pre-sealed envelopes, one in flight at a time,
/// with `streams` clients watching a video meanwhile.
fn chat_latency(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path, streams: usize) -> Result<Value, String> {
    let n = plan.chat_clients.max(streams + 2);
    let server = ServerProcess::start(videos, n + 16)?;
    let (tally, completions) = Tally::new(n - 1);
    let mut members = join_many(&server, "c", n, keys, &tally)?;
    await_complete(&completions, n, Duration::from_secs(120))?;
    drop(tally);
    // The addressee's reports are the ones we time; everyone else's are drained.
    let (addressee_tally, addressee_rx) = Tally::new(usize::MAX);
    let addressee = Member::join(server.address, "addressee".into(), &keys[1 % keys.len()], addressee_tally)?;
    thread::sleep(Duration::from_millis(200));
    let recipient = PeerKey::from_pem(keys[1 % keys.len()].public_pem()).map_err(|e| e.to_string())?;
    let envelopes: Vec<Envelope> = (0..plan.chat_messages)
        .map(|_| keys[0].seal("c0", "addressee", &recipient, "benchmark message").map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    for member in members.iter_mut().skip(2).take(streams) {
        member.send(&ClientMessage::Play { video: "Video_1".into(), pace: Pace::Native })?;
    }
    if streams > 0 {
        thread::sleep(Duration::from_millis(300));
    }
    let drain = thread::spawn(move || while completions.recv_timeout(Duration::from_secs(30)).is_ok() {});
    let mut latencies = Vec::with_capacity(envelopes.len());
    let sender = &mut members[0];
    for envelope in envelopes {
        let id = envelope.id.clone();
        let sent = Instant::now();
        sender.send(&ClientMessage::Send { envelope })?;
        loop {
            match addressee_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Report::Sealed(got, arrived)) if got == id => {
                    latencies.push(ms(arrived - sent));
                    break;
                }
                Ok(_) => {}
                Err(_) => return Err("a chat message was lost".into()),
            }
        }
    }
    let count = latencies.len();
    drop(addressee);
    drop(members);
    drop(server);
    let _ = drain.join();
    latencies.sort_by(f64::total_cmp);
    Ok(json!({
        "clients": n,
        "active_streams": streams,
        "messages": count,
        "p50_ms": percentile(&latencies, 50.0),
        "p99_ms": percentile(&latencies, 99.0),
        "max_ms": latencies.last().copied().unwrap_or(0.0),
    }))
}

/// The outcome of `count` viewers watching at once.
struct ViewerRun {
    complete: bool,
    p99_lateness_ms: f64,
    interval_ms: f64,
    cpu_ms_per_frame: f64,
}

fn viewers_once(keys: &Arc<Vec<Identity>>, videos: &Path, count: usize, distinct: bool) -> Result<ViewerRun, String> {
    let server = ServerProcess::start(videos, count + 16)?;
    let (tally, results) = Tally::new(usize::MAX);
    let mut members = Vec::with_capacity(count);
    for i in 0..count {
        members.push(Member::join(server.address, format!("v{i}"), &keys[i % keys.len()], tally.clone())?);
    }
    drop(tally);
    thread::sleep(Duration::from_millis(200 + count as u64));
    let cpu_before = cpu_ms(server.pid());
    for (i, member) in members.iter_mut().enumerate() {
        let video = if distinct { format!("Cold_{:02}", i + 1) } else { "Video_1".into() };
        member.send(&ClientMessage::Play { video, pace: Pace::Native })?;
    }
    let mut lateness = Vec::new();
    let (mut complete, mut interval_ms, mut delivered) = (true, 33.3, 0usize);
    for _ in 0..count {
        loop {
            match results.recv_timeout(Duration::from_secs(120)) {
                Ok(Report::Stream { frames, announced, fps }) => {
                    interval_ms = 1000.0 / fps.max(1.0);
                    complete &= frames.len() == announced as usize && announced > 0;
                    delivered += frames.len();
                    if let Some(&(first, _)) = frames.first() {
                        for (arrived, pts) in frames {
                            let due = first + Duration::from_micros(pts);
                            lateness.push(ms(arrived.saturating_duration_since(due)));
                        }
                    }
                    break;
                }
                Ok(_) => {}
                Err(_) => return Err(format!("a viewer of {count} never finished")),
            }
        }
    }
    let cpu = cpu_ms(server.pid()) - cpu_before;
    drop(members);
    drop(server);
    lateness.sort_by(f64::total_cmp);
    Ok(ViewerRun {
        complete,
        p99_lateness_ms: percentile(&lateness, 99.0),
        interval_ms,
        cpu_ms_per_frame: cpu / delivered.max(1) as f64,
    })
}

fn bench_viewers(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path) -> Result<Value, String> {
    let mut same_max = 0;
    let (mut cpu_per_frame, mut p99) = (0.0, 0.0);
    let mut steps = Vec::new();
    for &count in &plan.same_video_steps {
        let run = viewers_once(keys, videos, count, false)?;
        let ok = run.complete && run.p99_lateness_ms < run.interval_ms;
        eprintln!(
            "bench: {count} viewers of one video: p99 lateness {:.1} ms, complete {}",
            run.p99_lateness_ms, run.complete
        );
        steps.push(json!({ "viewers": count, "complete": run.complete, "p99_lateness_ms": run.p99_lateness_ms, "server_cpu_ms_per_frame": run.cpu_ms_per_frame }));
        if !run.complete {
            return Err(format!("{count} viewers of one video did not all receive every frame"));
        }
        if !ok {
            break;
        }
        (same_max, cpu_per_frame, p99) = (count, run.cpu_ms_per_frame, run.p99_lateness_ms);
    }
    let mut cold_max = 0;
    for &count in &plan.cold_steps {
        let run = viewers_once(keys, videos, count, true)?;
        eprintln!(
            "bench: {count} viewers of distinct cold videos: p99 lateness {:.1} ms, complete {}",
            run.p99_lateness_ms, run.complete
        );
        steps.push(json!({ "distinct_viewers": count, "complete": run.complete, "p99_lateness_ms": run.p99_lateness_ms, "server_cpu_ms_per_frame": run.cpu_ms_per_frame }));
        if !run.complete {
            return Err(format!("{count} viewers of distinct videos did not all receive every frame"));
        }
        if run.p99_lateness_ms >= run.interval_ms {
            break;
        }
        cold_max = count;
    }
    let top = plan.heights.iter().copied().max().unwrap_or(0);
    Ok(json!({
        "same_video_realtime_max": same_max,
        "distinct_videos_realtime_max_cold": cold_max,
        "server_cpu_ms_per_frame": cpu_per_frame,
        "p99_lateness_ms": p99,
        "cold_frame_ms": frame_costs(&videos.join(format!("Video_1_{top}p.mp4")), top)?,
        "steps": steps,
    }))
}

/// What one frame of the top resolution costs a cold stream, measured here
/// with the server's own calls: OpenCV decoding, then JPEG encoding at the
/// server's default quality. Four cold streams need four times their sum
/// per frame interval.
fn frame_costs(path: &Path, height: u32) -> Result<Value, String> {
    use opencv::core::{Mat, Vector};
    use opencv::imgcodecs::{IMWRITE_JPEG_QUALITY, imencode};
    use opencv::prelude::*;
    use opencv::videoio::{CAP_ANY, VideoCapture};

    let fail = |e: opencv::Error| format!("{}: {e}", path.display());
    let mut capture = VideoCapture::from_file(path, CAP_ANY).map_err(fail)?;
    let params = Vector::from_slice(&[IMWRITE_JPEG_QUALITY, i32::from(DEFAULT_JPEG_QUALITY)]);
    let (mut picture, mut jpeg) = (Mat::default(), Vector::<u8>::new());
    let (mut decode, mut encode, mut frames) = (Duration::ZERO, Duration::ZERO, 0u32);
    loop {
        let started = Instant::now();
        if !capture.read(&mut picture).map_err(fail)? || picture.empty() {
            break;
        }
        decode += started.elapsed();
        let started = Instant::now();
        imencode(".jpg", &picture, &mut jpeg, &params).map_err(fail)?;
        encode += started.elapsed();
        frames += 1;
    }
    if frames == 0 {
        return Err(format!("{}: no frames", path.display()));
    }
    let per_frame = |total: Duration| ms(total) / f64::from(frames);
    Ok(json!({ "height": height, "decode": per_frame(decode), "encode": per_frame(encode) }))
}

// ---------------------------------------------------------------- helpers

/// Generates the bench library under `dir/videos` (once), with copies named
/// `Cold_NN` so that distinct viewers start with nothing cached.
fn prepare_videos(dir: &Path, plan: &Plan) -> Result<PathBuf, String> {
    let tag: Vec<String> = plan.heights.iter().map(u32::to_string).collect();
    let videos = dir.join(format!("videos-{}s-{}", plan.video_seconds, tag.join("-")));
    let cold_count = plan.cold_steps.iter().copied().max().unwrap_or(0);
    let marker = videos.join(format!("Cold_{cold_count:02}_{}p.mp4", plan.heights[0]));
    if marker.exists() {
        return Ok(videos);
    }
    eprintln!("bench: generating videos in {}", videos.display());
    let spec =
        videos::Spec { out: videos.clone(), seconds: plan.video_seconds, fps: 30.0, heights: plan.heights.clone() };
    videos::generate(&spec).map_err(|e| e.to_string())?;
    for i in 1..=cold_count {
        for &height in &plan.heights {
            let from = videos.join(format!("Video_1_{height}p.mp4"));
            let to = videos.join(format!("Cold_{i:02}_{height}p.mp4"));
            fs::copy(&from, &to).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
        }
    }
    Ok(videos)
}

fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string());
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    json!({ "cores": cores, "model": model.unwrap_or_else(|| "unknown".into()) })
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 50.0)
}

/// The `p`-th percentile of sorted values (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_table(results: &Value) {
    let get = |path: &[&str]| {
        let mut value = results;
        for key in path {
            value = &value[*key];
        }
        match value {
            Value::Number(n) => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
            other => other.to_string(),
        }
    };
    let rows = [
        ("joins: clients", get(&["join", "clients"])),
        ("joins: seconds until every registry is complete", get(&["join", "seconds"])),
        (
            "chat idle: p50 / p99 / max ms",
            format!(
                "{} / {} / {}",
                get(&["chat", "idle", "p50_ms"]),
                get(&["chat", "idle", "p99_ms"]),
                get(&["chat", "idle", "max_ms"])
            ),
        ),
        (
            "chat with streams: p50 / p99 / max ms",
            format!(
                "{} / {} / {}",
                get(&["chat", "streams", "p50_ms"]),
                get(&["chat", "streams", "p99_ms"]),
                get(&["chat", "streams", "max_ms"])
            ),
        ),
        (
            "crypto: seal / open / keygen ms",
            format!(
                "{} / {} / {}",
                get(&["chat", "crypto_ms", "seal"]),
                get(&["chat", "crypto_ms", "open"]),
                get(&["chat", "crypto_ms", "keygen_median"])
            ),
        ),
        ("viewers of one video in real time", get(&["viewers", "same_video_realtime_max"])),
        ("viewers of distinct cold videos in real time", get(&["viewers", "distinct_videos_realtime_max_cold"])),
        ("server CPU ms per delivered frame", get(&["viewers", "server_cpu_ms_per_frame"])),
        (
            "cold top-resolution frame: decode / JPEG encode ms",
            format!(
                "{} / {}",
                get(&["viewers", "cold_frame_ms", "decode"]),
                get(&["viewers", "cold_frame_ms", "encode"])
            ),
        ),
        ("server memory KiB per idle client", get(&["server", "rss_kib_per_idle_client"])),
    ];
    println!("{:<50} value", "measure");
    for (name, value) in rows {
        println!("{name:<50} {value}");
    }
    if let Some(per_join) = results["join"]["bytes_per_join_at"].as_object() {
        for (n, bytes) in per_join {
            println!("{:<50} {}", format!("server bytes for join number {n}"), bytes);
        }
    }
}
