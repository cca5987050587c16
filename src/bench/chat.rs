//! The chat phase, driven from the bench's main thread: one-way relay
//! latency of sealed messages through the server — one sender idle, one
//! sender while clients watch videos, [`SENDERS`] senders at once, and one
//! sender with and without [`WEB_VIEWERS`] browsers following the web page
//! (interleaved) — and what sealing and opening cost on their own.
//!
//! Each sender runs a closed loop on a thread of its own (`bench-send-I`):
//! write one envelope, wait until its own addressee's reader thread has
//! read it, write the next. Envelopes are sealed before the clock starts
//! (one thread per sender, `bench-seal-I`), so the latency is the server's
//! and the network's alone: from the sender's write to the addressee
//! holding the frame. The clients that only watch the messages go by (all
//! but the addressees and the viewers) read at the lowest priority, as the
//! class's own machines that they stand for would not share the server's
//! cores (`Tally::in_background`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use serde_json::{Value, json};

use ciphercast::shared::crypto::{Identity, PeerKey};
use ciphercast::shared::message::{ClientMessage, Envelope};
use ciphercast::shared::video::Pace;

use super::clients::{Member, Report, Tally, await_complete, join_many};
use super::plan::Plan;
use super::report::{median, ms, percentile};
use super::server_process::ServerProcess;

/// Runs every chat measurement; returns the `chat` section of results.json.
pub(super) fn bench_chat(
    plan: &Plan,
    keys: &Arc<Vec<Identity>>,
    videos: &Path,
    keygen_ms: Vec<f64>,
) -> Result<Value, String> {
    let (seal, open) = crypto_costs(keys)?;
    let idle = chat_latency(plan, keys, videos, 0)?;
    let streams = chat_latency(plan, keys, videos, plan.chat_streams)?;
    let concurrent = chat_concurrent(plan, keys, videos)?;
    let web = chat_web(plan, keys, videos)?;
    Ok(json!({
        "idle": idle,
        "streams": streams,
        "concurrent": concurrent,
        "web": web,
        "crypto_ms": { "seal": seal, "open": open, "keygen_median": median(keygen_ms) },
    }))
}

/// Median milliseconds to seal and to open a short message.
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

/// How many clients send at once in `chat.concurrent`.
pub(super) const SENDERS: usize = 4;

/// How many browsers follow the web page's events in `chat.web`.
pub(super) const WEB_VIEWERS: usize = 5;

/// One-way relay latency of pre-sealed envelopes, one in flight at a time,
/// with `streams` clients watching a video meanwhile (`chat.idle`, `chat.streams`).
fn chat_latency(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path, streams: usize) -> Result<Value, String> {
    let run = chat_run(plan, keys, videos, 1, streams, 0)?;
    Ok(run.summary())
}

/// `chat.idle`'s measurement with and without [`WEB_VIEWERS`] browsers
/// following the web page, interleaved `plan.web_rounds` times. The target:
/// the median of the medians with the page within 10 % (plus 0.05 ms) of
/// the one without.
fn chat_web(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path) -> Result<Value, String> {
    let (mut plain, mut watched) = (Vec::new(), Vec::new());
    for _ in 0..plan.web_rounds {
        plain.push(chat_run(plan, keys, videos, 1, 0, 0)?);
        watched.push(chat_run(plan, keys, videos, 1, 0, WEB_VIEWERS)?);
    }
    let at = |runs: &[ChatRun], p: f64| runs.iter().map(|run| percentile(&run.latencies, p)).collect::<Vec<f64>>();
    let (plain_median, web_median) = (median(at(&plain, 50.0)), median(at(&watched, 50.0)));
    let target = plain_median * 1.1 + 0.05;
    eprintln!(
        "bench: chat p50 without the web page {plain_median:.3} ms, with {WEB_VIEWERS} browsers {web_median:.3} ms"
    );
    Ok(json!({
        "viewers": WEB_VIEWERS,
        "rounds": plan.web_rounds,
        "plain_p50_ms": at(&plain, 50.0),
        "web_p50_ms": at(&watched, 50.0),
        "plain_p99_ms": at(&plain, 99.0),
        "web_p99_ms": at(&watched, 99.0),
        "plain_p50_median_ms": plain_median,
        "web_p50_median_ms": web_median,
        "target_ms": target,
        "met": web_median <= target,
    }))
}

/// A browser following the web page's event stream: a thread reading it
/// until the server goes; returns once the first event (the present
/// state) has arrived.
fn follow_page(page: SocketAddr) -> Result<thread::JoinHandle<()>, String> {
    let mut stream = TcpStream::connect(page).map_err(|e| format!("cannot reach the web page: {e}"))?;
    write!(stream, "GET /events HTTP/1.1\r\nHost: {page}\r\n\r\n").map_err(|e| e.to_string())?;
    let (started, first) = crossbeam_channel::bounded(1);
    let reader = thread::Builder::new()
        .name("bench-browser".into())
        .spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let _ = started.try_send(());
            }
        })
        .map_err(|e| e.to_string())?;
    first.recv_timeout(Duration::from_secs(10)).map_err(|_| "the web page sent no event")?;
    Ok(reader)
}

/// [`SENDERS`] senders at once, each in its own closed loop to an addressee
/// of its own, `plan.chat_messages` messages each, no streams (`chat.concurrent`).
fn chat_concurrent(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path) -> Result<Value, String> {
    let run = chat_run(plan, keys, videos, SENDERS, 0, 0)?;
    let expected = SENDERS * plan.chat_messages;
    if run.latencies.len() != expected {
        return Err(format!("{SENDERS} senders: {} of {expected} chat messages arrived", run.latencies.len()));
    }
    let per_second = run.latencies.len() as f64 / run.wall.as_secs_f64().max(f64::EPSILON);
    let mut summary = run.summary();
    summary["senders"] = json!(SENDERS);
    summary["messages_per_second"] = json!(per_second);
    Ok(summary)
}

/// What one chat measurement saw.
struct ChatRun {
    /// Clients joined besides the addressees.
    clients: usize,
    /// Clients watching a video meanwhile.
    streams: usize,
    /// Every message's latency in milliseconds, all senders together, sorted.
    latencies: Vec<f64>,
    /// From the first write to the last message read.
    wall: Duration,
}

impl ChatRun {
    /// The fields every chat measurement has in results.json.
    fn summary(&self) -> Value {
        json!({
            "clients": self.clients,
            "active_streams": self.streams,
            "messages": self.latencies.len(),
            "p50_ms": percentile(&self.latencies, 50.0),
            "p99_ms": percentile(&self.latencies, 99.0),
            "max_ms": self.latencies.last().copied().unwrap_or(0.0),
        })
    }
}

/// On a fresh server with `plan.chat_clients` joined clients (broadcast
/// relay, the server's default): `senders` of them each send
/// `plan.chat_messages` pre-sealed envelopes to an addressee of their own,
/// all at once, while `streams` others watch a video and `browsers`
/// follow the server's web page (started with `--web` when there are any).
fn chat_run(
    plan: &Plan,
    keys: &Arc<Vec<Identity>>,
    videos: &Path,
    senders: usize,
    streams: usize,
    browsers: usize,
) -> Result<ChatRun, String> {
    // Senders are c0…, watchers the last `streams`, and at least one client is a mere bystander.
    let n = plan.chat_clients.max(senders + streams + 1);
    let server = if browsers > 0 {
        ServerProcess::start_with(videos, n + senders + 16, &["--store", "none", "--web", "127.0.0.1:0"])?
    } else {
        ServerProcess::start(videos, n + senders + 16)?
    };
    let mut following = Vec::with_capacity(browsers);
    if let Some(page) = server.web {
        for _ in 0..browsers {
            following.push(follow_page(page)?);
        }
    }
    // Everyone but the addressees and the watchers (the senders' readers
    // included) only watches the messages go by: a class's own machines,
    // here sharing the server's cores (see `Tally::in_background`). The
    // watchers read at the normal priority, so that the phase with streams
    // measures chat under the same video load as before.
    let (tally, completions) = Tally::new(n - 1);
    let mut members = join_many(&server, "c", 0..n - streams, keys, &tally.clone().in_background())?;
    members.extend(join_many(&server, "c", n - streams..n, keys, &tally)?);
    await_complete(&completions, n, Duration::from_secs(120))?;
    drop(tally);
    // Each addressee reports to a channel of its own, so a sender waits for
    // its own messages only; everyone else's reports are drained.
    let mut addressees = Vec::with_capacity(senders);
    for i in 0..senders {
        let (tally, arrivals) = Tally::new(usize::MAX);
        let key = &keys[(i + 1) % keys.len()];
        addressees.push((Member::join(server.address, format!("addressee{i}"), key, tally)?, arrivals));
    }
    // Let the announcements of the addressees settle (writers hold join
    // bursts for the server's batch window), so no burst is held when the clock starts.
    thread::sleep(Duration::from_millis(200));
    let envelopes = in_parallel("seal", (0..senders).collect(), |i| {
        let recipient = PeerKey::from_pem(keys[(i + 1) % keys.len()].public_pem()).map_err(|e| e.to_string())?;
        let (from, to) = (format!("c{i}"), format!("addressee{i}"));
        (0..plan.chat_messages)
            .map(|_| keys[i % keys.len()].seal(&from, &to, &recipient, "benchmark message").map_err(|e| e.to_string()))
            .collect::<Result<Vec<Envelope>, String>>()
    })?;
    for member in members.iter_mut().skip(n - streams) {
        member.send(&ClientMessage::Play { video: "Video_1".into(), pace: Pace::Native, start: None, plan: None })?;
    }
    if streams > 0 {
        thread::sleep(Duration::from_millis(300));
    }
    let drain = thread::spawn(move || while completions.recv_timeout(Duration::from_secs(30)).is_ok() {});
    // Sender i writes to addressee i: (its member, its addressee's reports, its envelopes).
    let loops: Vec<_> = members
        .iter_mut()
        .zip(&addressees)
        .zip(envelopes)
        .map(|((sender, (_, arrivals)), envelopes)| (sender, arrivals, envelopes))
        .collect();
    let started = Instant::now();
    let per_sender =
        in_parallel("send", loops, |(sender, arrivals, envelopes)| closed_loop(sender, arrivals, envelopes))?;
    let wall = started.elapsed();
    drop(addressees);
    drop(members);
    drop(server);
    let _ = drain.join();
    for browser in following {
        let _ = browser.join();
    }
    let mut latencies: Vec<f64> = per_sender.into_iter().flatten().collect();
    latencies.sort_by(f64::total_cmp);
    Ok(ChatRun { clients: n, streams, latencies, wall })
}

/// Sends `envelopes` one at a time, each once the previous one has reached
/// the addressee whose reports `arrivals` receives; returns each latency in ms.
fn closed_loop(sender: &mut Member, arrivals: &Receiver<Report>, envelopes: Vec<Envelope>) -> Result<Vec<f64>, String> {
    let mut latencies = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let id = envelope.id.clone();
        let sent = Instant::now();
        sender.send(&ClientMessage::Send { envelope })?;
        loop {
            match arrivals.recv_timeout(Duration::from_secs(10)) {
                Ok(Report::Sealed(got, arrived)) if got == id => {
                    latencies.push(ms(arrived - sent));
                    break;
                }
                Ok(_) => {}
                Err(_) => return Err("a chat message was lost".into()),
            }
        }
    }
    Ok(latencies)
}

/// Runs `work` on every item at once, each on a thread of its own named
/// `bench-WHAT-I`; returns the results in the items' order, or the first error.
fn in_parallel<I: Send, T: Send>(
    what: &str,
    items: Vec<I>,
    work: impl Fn(I) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    thread::scope(|scope| {
        let mut handles = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let work = &work;
            let handle = thread::Builder::new()
                .name(format!("bench-{what}-{i}"))
                .spawn_scoped(scope, move || work(item))
                .map_err(|e| format!("cannot start a {what} thread: {e}"))?;
            handles.push(handle);
        }
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(format!("a {what} thread panicked")))).collect()
    })
}
