//! The join phase, run from the bench's main thread: how long until a class
//! of clients joining together all hold the complete registry, the bytes the
//! server sends for the N-th join, and the server's memory per idle client.
//!
//! Delivering the registry is O(N²) by nature (the k-th newcomer receives
//! k−1 entries, and k−1 members are told of it), so this is the phase where
//! the server's per-entry cost shows.

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use ciphercast::shared::crypto::Identity;

use super::clients::{Member, Tally, await_complete, join_many};
use super::plan::Plan;
use super::server_process::{ServerProcess, cpu_ms, rss_kib};

/// Joins `plan.join_clients` clients; returns the `join` and `server`
/// sections of results.json.
pub(super) fn bench_joins(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path) -> Result<(Value, Value), String> {
    let n = plan.join_clients;
    let server = ServerProcess::start(videos, n + 16)?;
    thread::sleep(Duration::from_millis(200));
    let rss_before = rss_kib(server.pid());
    let (tally, completions) = Tally::new(n - 1);
    let (server_cpu_before, own_cpu_before) = (cpu_ms(server.pid()), cpu_ms(std::process::id()));
    let started = Instant::now();
    let members = join_many(&server, "c", 0..n, keys, &tally)?;
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
    let mut members = join_many(&server, "m", 0..n - 1, keys, &tally)?;
    await_complete(&completions, n - 1, Duration::from_secs(120))?;
    tally.set_target(n - 1);
    thread::sleep(Duration::from_millis(100));
    let before = tally.received();
    members.push(Member::join(server.address, "newcomer".into(), &keys[0], tally.clone())?);
    await_complete(&completions, n, Duration::from_secs(60))?;
    thread::sleep(Duration::from_millis(50));
    Ok((tally.received() - before) as f64)
}
