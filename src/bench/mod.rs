//! `ciphercast bench`: measures what each kind of work costs. Runs on the
//! binary's main thread, which drives every phase in turn.
//!
//! The bench is part of the binary, not of the library, so the compiler
//! holds it to the library's public interface: it speaks the protocol with
//! `ciphercast::shared` exactly as any outside program could, and cannot
//! reach into the server's or the client's internals.
//!
//! The real server runs as a separate process on loopback (a fresh one per
//! phase; [`server_process`]), so its CPU time and memory can be read from
//! `/proc`. Synthetic clients in this process speak the real protocol, one
//! reader thread each, and do with every registry entry what the real
//! client does ([`clients`]). Keys come from a small pre-generated pool (the
//! server does not require distinct keys).
//!
//! Phases, in this order: joins ([`join`]: time until every registry is
//! complete; the server's bytes per join; server memory per idle client),
//! chat ([`chat`]: latency idle, with video streams running, and with four
//! senders at once; the cost of sealing and opening), and concurrent
//! real-time viewers ([`viewers`]: one video, and distinct cold videos;
//! [`prepared`]: how fast a video is prepared, and viewers of a prepared
//! video each at its own position), and the adaptive plan ([`adaptive`]: the
//! real client, unthrottled and at `--max-kbps 12000`).
//! Results go to `target/bench/results.json`, and [`report`] prints the
//! table. `--quick` runs small counts and checks outcomes only; it runs
//! inside `make test`.

mod adaptive;
mod chat;
mod clients;
mod join;
mod plan;
mod prepared;
mod report;
mod server_process;
mod viewers;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use serde_json::{Value, json};

use ciphercast::cli::BenchPhase;
use ciphercast::shared::crypto::Identity;
use ciphercast::videos;

use plan::Plan;
use report::ms;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Small counts, outcomes only (for `make test`).
    pub(crate) quick: bool,
    /// One phase only (results to `results-PHASE.json`).
    pub(crate) only: Option<BenchPhase>,
}

/// Where results and bench videos go: `CIPHERCAST_BENCH_DIR`, or
/// `target/bench` under the repository root.
fn output_dir() -> PathBuf {
    std::env::var_os("CIPHERCAST_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench"))
}

/// Runs every phase, prints the table, writes `results.json`; returns its path.
pub(crate) fn run(options: Options) -> Result<PathBuf, String> {
    let plan = Plan::new(options.quick);
    let dir = output_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // A thousand clients are a thousand sockets here too.
    ciphercast::server::raise_open_file_limit();
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
    let (mut prepare, mut adaptive) = (Value::Null, Value::Null);
    if wanted(BenchPhase::Join) {
        eprintln!("bench: joins");
        (join, server_memory) = join::bench_joins(&plan, &keys, &videos)?;
    }
    if wanted(BenchPhase::Chat) {
        eprintln!("bench: chat");
        chat = chat::bench_chat(&plan, &keys, &videos, keygen_ms)?;
    }
    if wanted(BenchPhase::Viewers) {
        eprintln!("bench: viewers");
        viewers = viewers::bench_viewers(&plan, &keys, &videos)?;
        eprintln!("bench: prepared viewers");
        let (prepared, prepared_viewers) = prepared::bench_prepared(&plan, &keys, &dir)?;
        prepare = prepared;
        if let (Value::Object(all), Value::Object(more)) = (&mut viewers, prepared_viewers) {
            all.extend(more);
        }
    }

    if wanted(BenchPhase::Adaptive) {
        eprintln!("bench: adaptive plan");
        adaptive = adaptive::bench_adaptive(&plan, &keys, &dir)?;
    }

    let results = json!({
        "machine": machine(),
        "quick": options.quick,
        "join": join,
        "chat": chat,
        "viewers": viewers,
        "prepare": prepare,
        "adaptive": adaptive,
        "server": server_memory,
    });
    report::print_table(&results);
    let path = match options.only {
        Some(phase) => dir.join(format!("results-{}.json", format!("{phase:?}").to_lowercase())),
        None => dir.join("results.json"),
    };
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    fs::write(&path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

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

/// Generates the demo videos (30 fps) into `out`, unless its file `marker`
/// is there from an earlier bench; the files made (none if it was there).
fn generate_once(out: &Path, seconds: f64, heights: &[u32], marker: &str, what: &str) -> Result<Vec<PathBuf>, String> {
    if out.join(marker).exists() {
        return Ok(Vec::new());
    }
    eprintln!("bench: generating the {seconds} s videos for {what}");
    let spec = videos::Spec { out: out.to_path_buf(), seconds, fps: 30.0, heights: heights.to_vec() };
    videos::generate(&spec).map_err(|e| e.to_string())
}

/// The machine the figures belong to: its core count and CPU model.
fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string());
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    json!({ "cores": cores, "model": model.unwrap_or_else(|| "unknown".into()) })
}
