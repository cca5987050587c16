//! The chat phase, run from the bench's main thread: one-way relay latency
//! of sealed messages through the server (idle, and while clients watch
//! videos), and what sealing and opening cost on their own.
//!
//! Envelopes are sealed before the clock starts, so the latency is the
//! server's and the network's alone: from the sender's write to the
//! addressee's reader thread holding the frame.

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use ciphercast::shared::crypto::{Identity, PeerKey};
use ciphercast::shared::message::{ClientMessage, Envelope};
use ciphercast::shared::video::Pace;

use super::Plan;
use super::clients::{Member, Report, Tally, await_complete, join_many};
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
    Ok(json!({
        "idle": idle,
        "streams": streams,
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
