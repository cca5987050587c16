//! The instructor's view: a live web page of the server for the projector
//! (`ciphercast server --web ADDR:PORT`). Who is online with their
//! fingerprints, every sealed message flowing as ciphertext, every stream
//! and its resolution, the server's counters.
//!
//! This file is the hub. The server's threads tell it what happens — a
//! join, a leave, a relay, a stream's progress — and it keeps the current
//! state (for a page opened mid-class), the last [`RECENT_EVENTS`] events,
//! and one bounded channel per browser watching ([`http`] serves them).
//! Telling it never waits: an event for a browser whose channel is full is
//! dropped and counted, so a stalled browser can never delay a relay or a
//! frame. Nothing secret passes through: the server has no plaintext, and
//! the page shows only what a client sent to everyone — names, public-key
//! fingerprints, sizes, ciphertext.

pub(crate) mod http;
pub(crate) mod metrics;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde_json::{Value, json};

use crate::server::config::RelayMode;
use crate::shared::crypto::{Fingerprint, now_millis};

/// Events a page opened mid-class is shown at once.
pub(crate) const RECENT_EVENTS: usize = 50;

/// Events that may wait for one browser; more are dropped and counted.
pub(crate) const VIEWER_EVENTS: usize = 256;

/// Seconds of a stream's resolution strip kept.
const STRIP_SECONDS: usize = 120;

/// How often a stream's progress is told.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Bytes of a ciphertext's start shown for each relayed message.
pub(crate) const CIPHERTEXT_HEAD: usize = 16;

/// Bystanders named in a broadcast message's row (the rest are counted).
const NAMED_BYSTANDERS: usize = 8;

/// What the page knows of one client.
struct Member {
    fingerprint: String,
    joined_at: u64,
    address: String,
}

/// One browser watching the event stream.
pub(crate) struct Viewer {
    events: Sender<Arc<str>>,
    /// Events dropped because its channel was full.
    pub(crate) skipped: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    roster: BTreeMap<String, Member>,
    /// Streams by (viewer, stream id): the latest progress event, and the strip.
    streams: BTreeMap<(String, u32), (Value, VecDeque<String>)>,
    counters: Value,
    recent: VecDeque<Arc<str>>,
    viewers: Vec<Viewer>,
    /// The server is stopping: no new browser is taken on.
    closed: bool,
}

/// The hub. One per server with `--web`; every thread that has something to
/// tell holds a reference.
pub(crate) struct Web {
    state: Mutex<State>,
    show_addresses: bool,
    /// Events dropped for browsers that could not keep up, all told.
    pub(crate) skipped_total: AtomicU64,
}

impl Web {
    pub(crate) fn new(show_addresses: bool) -> Web {
        Web { state: Mutex::default(), show_addresses, skipped_total: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client joined.
    pub(crate) fn joined(&self, name: &str, fingerprint: Fingerprint, address: SocketAddr) {
        let fingerprint = fingerprint.to_string();
        let address = if self.show_addresses { address.to_string() } else { String::new() };
        let at = now_millis();
        let event = json!({"type": "joined", "name": name, "fingerprint": fingerprint, "at": at, "address": address});
        let mut state = self.lock();
        state.roster.insert(name.to_string(), Member { fingerprint, joined_at: at, address });
        publish(&mut state, &self.skipped_total, &event, true);
    }

    /// A client left.
    pub(crate) fn left(&self, name: &str, reason: &str) {
        let mut state = self.lock();
        state.roster.remove(name);
        state.streams.retain(|(viewer, _), _| viewer != name);
        publish(
            &mut state,
            &self.skipped_total,
            &json!({"type": "left", "name": name, "reason": reason, "at": now_millis()}),
            true,
        );
    }

    /// A sealed message was relayed to `recipients` clients.
    pub(crate) fn relayed(
        &self,
        from: &str,
        to: &str,
        ciphertext: &[u8],
        bytes: usize,
        recipients: usize,
        mode: RelayMode,
    ) {
        let mode = match mode {
            RelayMode::Broadcast => "broadcast",
            RelayMode::Direct => "direct",
        };
        let head: String = ciphertext.iter().take(CIPHERTEXT_HEAD).map(|b| format!("{b:02x}")).collect();
        let mut state = self.lock();
        // Who else received it, as far as the roster tells (a few, by name).
        let bystanders: Vec<&String> = match mode {
            "broadcast" => {
                state.roster.keys().filter(|name| *name != from && *name != to).take(NAMED_BYSTANDERS).collect()
            }
            _ => Vec::new(),
        };
        let event = json!({
            "type": "relayed", "from": from, "to": to, "bytes": bytes, "head": head,
            "recipients": recipients, "bystanders": bystanders, "mode": mode, "at": now_millis(),
        });
        publish(&mut state, &self.skipped_total, &event, true);
    }

    /// A stream's progress, start or end (see [`StreamReport`]).
    /// `change` as [`StreamReport::tell`] names it.
    fn stream(&self, key: (String, u32), event: Value, change: &str) {
        let mut state = self.lock();
        if change == "end" {
            state.streams.remove(&key);
        } else {
            let resolution = event["resolution"].as_str().unwrap_or_default().to_string();
            let entry = state.streams.entry(key).or_insert_with(|| (Value::Null, VecDeque::new()));
            entry.0 = event.clone();
            if !resolution.is_empty() {
                entry.1.push_back(resolution);
                if entry.1.len() > STRIP_SECONDS {
                    entry.1.pop_front();
                }
            }
        }
        publish(&mut state, &self.skipped_total, &event, change != "progress");
    }

    /// The server's counters, once a second ([`metrics`]).
    pub(crate) fn counters(&self, counters: Value) {
        let event = json!({"type": "counters", "counters": counters});
        let mut state = self.lock();
        state.counters = counters;
        publish(&mut state, &self.skipped_total, &event, false);
    }

    /// Everything a page needs to show the present at once.
    pub(crate) fn snapshot(&self) -> Value {
        snapshot(&self.lock())
    }

    /// A new browser's channel — its events from now on — with the present
    /// as it stands just before the first of them (one lock: no event is
    /// both in the present and in the channel, none in neither). Once the
    /// server is stopping, the channel is closed from the start.
    pub(crate) fn watch(&self) -> (Receiver<Arc<str>>, Arc<AtomicU64>, Value) {
        let (events, receiver) = crossbeam_channel::bounded(VIEWER_EVENTS);
        let skipped = Arc::new(AtomicU64::new(0));
        let mut state = self.lock();
        if !state.closed {
            state.viewers.push(Viewer { events, skipped: Arc::clone(&skipped) });
        }
        (receiver, skipped, snapshot(&state))
    }

    /// Browsers watching now.
    pub(crate) fn viewers(&self) -> usize {
        self.lock().viewers.len()
    }

    /// Lets every browser's event stream end (the server is stopping).
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.viewers.clear();
    }
}

/// The present, for a page: the roster, the streams, the counters, the recent events.
fn snapshot(state: &State) -> Value {
    let roster: Vec<Value> = state
        .roster
        .iter()
        .map(|(name, m)| {
            let streaming = state.streams.keys().any(|(viewer, _)| viewer == name);
            json!({"name": name, "fingerprint": m.fingerprint, "joined_at": m.joined_at,
                   "address": m.address, "threads": if streaming { 3 } else { 2 }})
        })
        .collect();
    let streams: Vec<Value> = state
        .streams
        .values()
        .map(|(event, strip)| {
            let mut stream = event.clone();
            stream["strip"] = json!(strip);
            stream
        })
        .collect();
    let recent: Vec<Value> = state.recent.iter().filter_map(|text| serde_json::from_str(text).ok()).collect();
    json!({"type": "snapshot", "roster": roster, "streams": streams, "counters": state.counters, "recent": recent})
}

/// Hands `event` to every browser without waiting, and keeps it among the
/// recent ones if `kept`. A browser whose channel is full loses it.
fn publish(state: &mut State, skipped_total: &AtomicU64, event: &Value, kept: bool) {
    let text: Arc<str> = event.to_string().into();
    if kept {
        if state.recent.len() == RECENT_EVENTS {
            state.recent.pop_front();
        }
        state.recent.push_back(Arc::clone(&text));
    }
    state.viewers.retain(|viewer| match viewer.events.try_send(Arc::clone(&text)) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            viewer.skipped.fetch_add(1, Ordering::Relaxed);
            skipped_total.fetch_add(1, Ordering::Relaxed);
            true
        }
        // Its browser left.
        Err(TrySendError::Disconnected(_)) => false,
    });
}

/// What a streaming thread tells the page: its start, its progress once a
/// second (and at each change of resolution), its end.
pub(crate) struct StreamReport {
    web: Option<Arc<Web>>,
    key: (String, u32),
    video: String,
    plan: &'static str,
    resolution: String,
    frame: u32,
    sent: u64,
    bytes: u64,
    late: u64,
    /// Frames sent per second, as last measured.
    fps: f64,
    /// When progress was last told, and the frames sent then.
    told: (Instant, u64),
}

impl StreamReport {
    pub(crate) fn new(
        web: Option<Arc<Web>>,
        viewer: &str,
        stream: u32,
        video: &str,
        plan: &'static str,
    ) -> StreamReport {
        let key = (viewer.to_string(), stream);
        let (video, resolution) = (video.to_string(), String::new());
        let told = (Instant::now(), 0);
        StreamReport { web, key, video, plan, resolution, frame: 0, sent: 0, bytes: 0, late: 0, fps: 0.0, told }
    }

    /// Picture `frame` of `resolution` (`bytes` long) is on its way; the
    /// stream has sent `sent` so far, `late` of them after their time.
    pub(crate) fn frame(&mut self, frame: u32, resolution: &str, bytes: usize, sent: u32, late: u32) {
        if self.web.is_none() {
            return;
        }
        (self.frame, self.bytes) = (frame, self.bytes + bytes as u64);
        (self.sent, self.late) = (u64::from(sent), u64::from(late));
        // Its first picture and each change of resolution are worth keeping
        // among the recent events; the rest is progress.
        let change = match (self.resolution.is_empty(), self.resolution != resolution) {
            (true, _) => "start",
            (false, true) => "switch",
            (false, false) => "progress",
        };
        if change != "progress" {
            self.resolution = resolution.to_string();
        }
        if change != "progress" || self.told.0.elapsed() >= PROGRESS_EVERY {
            self.tell("playing", change);
        }
    }

    /// The stream ended (`reason` as its `stream_end` says).
    pub(crate) fn ended(&mut self, reason: &str) {
        self.tell(reason, "end");
    }

    /// Tells the page; `change` says what is new: `start`, `switch` (of
    /// resolution), `end` — kept among the recent events — or `progress`.
    fn tell(&mut self, state: &str, change: &str) {
        let Some(web) = &self.web else { return };
        // (Over half a second at least: a switch right after a report says nothing of the rate.)
        let elapsed = self.told.0.elapsed().as_secs_f64();
        if elapsed >= 0.5 {
            self.fps = self.sent.saturating_sub(self.told.1) as f64 / elapsed;
            self.told = (Instant::now(), self.sent);
        }
        let fps = self.fps;
        let event = json!({
            "type": "stream", "viewer": self.key.0, "stream": self.key.1, "video": self.video, "plan": self.plan,
            "state": state, "resolution": self.resolution, "frame": self.frame, "fps": (fps * 10.0).round() / 10.0,
            "late": self.late, "bytes": self.bytes, "change": change, "at": now_millis(),
        });
        web.stream(self.key.clone(), event, change);
    }
}
