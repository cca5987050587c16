//! The server's counters: what its sockets carried, what its streams sent
//! and where their pictures came from. Counted by the threads that do the
//! work (relaxed atomics, nothing waits); once a second the web's sampler
//! thread turns them into rates for the page, and `/metrics` prints them
//! in the Prometheus text format for those who graph them.

use std::fmt::Write as _;
use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Web;
use crate::server::live::Live;
use crate::server::registry::Registry;

/// Counts kept by the whole server.
#[derive(Default)]
pub(crate) struct Traffic {
    /// Bytes read from and written to clients' sockets.
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Video frames written to viewers.
    pub(crate) frames_out: AtomicU64,
    /// Where streams took their pictures: the store, the frame cache, or
    /// decoded and encoded then.
    pub(crate) from_store: AtomicU64,
    pub(crate) from_cache: AtomicU64,
    pub(crate) encoded: AtomicU64,
    /// Sealed messages relayed.
    pub(crate) relayed: AtomicU64,
}

impl Traffic {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A client's socket as its writer writes it: every byte counted.
pub(crate) struct Counted<'a> {
    pub(crate) socket: &'a TcpStream,
    pub(crate) traffic: &'a Traffic,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.socket.write(buf)?;
        Traffic::add(&self.traffic.bytes_out, n as u64);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.socket.write_vectored(bufs)?;
        Traffic::add(&self.traffic.bytes_out, n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

/// Everything the counters say now.
/// Where each counter stands in [`Reading::values`].
const BYTES_IN: usize = 0;
const BYTES_OUT: usize = 1;
const FRAMES_OUT: usize = 2;
const FROM_STORE: usize = 3;
const FROM_CACHE: usize = 4;
const ENCODED: usize = 5;
const RELAYED: usize = 6;

pub(crate) struct Reading {
    pub(crate) clients: usize,
    pub(crate) threads: u64,
    pub(crate) outbox: usize,
    pub(crate) connections: usize,
    pub(crate) values: [(&'static str, &'static str, u64); 7],
}

pub(crate) fn read(traffic: &Traffic, registry: &Registry, live: &Live) -> Reading {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (clients, outbox) = registry.census();
    Reading {
        clients,
        threads: threads(),
        outbox,
        connections: live.count(),
        values: [
            ("bytes_in_total", "Bytes read from clients", get(&traffic.bytes_in)),
            ("bytes_out_total", "Bytes written to clients", get(&traffic.bytes_out)),
            ("frames_out_total", "Video frames written to viewers", get(&traffic.frames_out)),
            ("frames_from_store_total", "Pictures read from the prepared store", get(&traffic.from_store)),
            ("frames_from_cache_total", "Pictures found in the frame cache", get(&traffic.from_cache)),
            ("frames_encoded_total", "Pictures decoded and encoded for a stream", get(&traffic.encoded)),
            ("relayed_total", "Sealed messages relayed", get(&traffic.relayed)),
        ],
    }
}

/// The threads of this process (Linux; 0 elsewhere).
fn threads() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// `/metrics`: the counters in the Prometheus text format.
pub(crate) fn prometheus(reading: &Reading, web: &Web) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP ciphercast_{name} {help}\n# TYPE ciphercast_{name} {kind}\nciphercast_{name} {value}"
        );
    };
    metric("clients", "Clients joined", "gauge", reading.clients as u64);
    metric("connections", "Connections being served, joined or not", "gauge", reading.connections as u64);
    metric("threads", "Threads of the server process", "gauge", reading.threads);
    metric("outbox_messages", "Messages queued for clients, all outboxes together", "gauge", reading.outbox as u64);
    for (name, help, value) in reading.values {
        metric(name, help, "counter", value);
    }
    metric("web_viewers", "Browsers watching the event stream", "gauge", web.viewers() as u64);
    metric(
        "web_events_skipped_total",
        "Events dropped for browsers that could not keep up",
        "counter",
        web.skipped_total.load(Ordering::Relaxed),
    );
    out
}

/// Once a second until `stop`: the counters as rates, to every page.
pub(crate) fn sample(web: &Web, traffic: &Traffic, registry: &Registry, live: &Live, stop: &AtomicBool) {
    let mut before = (Instant::now(), read(traffic, registry, live).values.map(|(_, _, v)| v));
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_secs(1));
        let now = read(traffic, registry, live);
        let values = now.values.map(|(_, _, v)| v);
        let seconds = before.0.elapsed().as_secs_f64().max(0.001);
        let rate = |i: usize| (values[i].saturating_sub(before.1[i]) as f64 / seconds).round() as u64;
        let pictures = (values[FROM_STORE] + values[FROM_CACHE] + values[ENCODED]).max(1) as f64;
        let share = |i: usize| (values[i] as f64 / pictures * 1000.0).round() / 10.0;
        web.counters(json!({
            "clients": now.clients, "threads": now.threads, "outbox": now.outbox,
            "bytes_in_per_s": rate(BYTES_IN), "bytes_out_per_s": rate(BYTES_OUT), "frames_per_s": rate(FRAMES_OUT),
            "store_percent": share(FROM_STORE), "cache_percent": share(FROM_CACHE), "relayed": values[RELAYED],
        }));
        before = (Instant::now(), values);
    }
}
