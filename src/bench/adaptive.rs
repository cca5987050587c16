//! The adaptive phase, run from the bench's main thread: the real client
//! (this executable's `client --plan adaptive --display none --trace`)
//! watches the demo's `Video_2`, as a student would, unthrottled and at
//! `--max-kbps 12000`, the runs interleaved. Each switch is timed as its
//! trace line arrives; lateness and the last resolution come from the
//! summary line. The targets (docs/BENCHMARKS.md): unthrottled, the top
//! resolution within 5 s and `last` the top; at 12 Mbit/s, `last` 720p or
//! lower with fewer than 10 % of the frames late.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use ciphercast::shared::crypto::Identity;

use super::clients::{Member, Tally};
use super::generate_once;
use super::plan::Plan;
use super::prepared::wait_prepared;
use super::report::median;
use super::server_process::ServerProcess;

const VIDEO: &str = "Video_2";

/// The link of the throttled runs, in kbit/s.
const SLOW_LINK_KBPS: u32 = 12_000;

/// How long one playback may take before the run is given up.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// What one playback showed.
struct Run {
    /// Seconds from the first frame's arrival to the switch to the top
    /// resolution (`None`: it never got there).
    seconds_to_top: Option<f64>,
    /// The summary's fields.
    last: String,
    late: u32,
    received: u32,
    resolutions: String,
}

/// Generates the phase's videos (once) in `dir/adaptive-<seconds>s`.
fn make_videos(dir: &Path, plan: &Plan) -> Result<PathBuf, String> {
    let videos = dir.join(format!("adaptive-{}s", plan.adaptive_video_seconds));
    let top = format!("{VIDEO}_{}p.mp4", plan.heights[plan.heights.len() - 1]);
    generate_once(&videos, plan.adaptive_video_seconds, &plan.heights, &top, "the adaptive phase")?;
    Ok(videos)
}

/// One playback by the real client; `top` is the highest resolution's label.
fn watch(server: &ServerProcess, dir: &Path, name: &str, top: &str, max_kbps: Option<u32>) -> Result<Run, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let address = server.address.to_string();
    let mut command = Command::new(exe);
    command.args(["client", "--server", &address, "--name", name, "--ephemeral", "--display", "none"]);
    command.args(["--plan", "adaptive", "--trace"]);
    if let Some(kbps) = max_kbps {
        command.args(["--max-kbps", &kbps.to_string()]);
    }
    let mut child = command
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the client: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("2\n{VIDEO}\n3\n").as_bytes()).map_err(|e| e.to_string())?;
    }
    // The trace, timed line by line: the first frame, and the switch to the top.
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let top_switch = format!("resolution={top} ");
    let trace = thread::spawn(move || {
        let (mut first_frame, mut at_top) = (None, None);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let now = Instant::now();
            if first_frame.is_none() && line.contains(" video ") {
                first_frame = Some(now);
            }
            if at_top.is_none() && line.contains("stream_state") && line.contains(&top_switch) {
                at_top = Some(now);
            }
        }
        first_frame.zip(at_top).map(|(first, top)| (top - first).as_secs_f64())
    });
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let output = thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    let started = Instant::now();
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
        }
        thread::sleep(Duration::from_millis(50));
    }
    let seconds_to_top = trace.join().map_err(|_| "the trace reader panicked")?;
    let output = output.join().map_err(|_| "the output reader panicked")?;
    let summary =
        output.into_iter().find(|line| line.starts_with("summary: ")).ok_or("the client printed no summary")?;
    let field =
        |key: &str| summary.split(' ').find_map(|f| f.strip_prefix(&format!("{key}="))).unwrap_or_default().to_string();
    let received = field("frames").split('/').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    // With the top resolution as the first, there is no switch to it.
    let seconds_to_top = seconds_to_top.or_else(|| field("resolutions").starts_with(top).then_some(0.0));
    Ok(Run {
        seconds_to_top,
        last: field("last"),
        late: field("late").parse().unwrap_or(0),
        received,
        resolutions: field("resolutions"),
    })
}

/// The runs of one kind as results: each run, the median late share and
/// time to the top, and the last resolution of every run.
fn section(runs: &[Run]) -> Value {
    let late_percent = |run: &Run| 100.0 * f64::from(run.late) / f64::from(run.received.max(1));
    let to_top: Vec<f64> = runs.iter().filter_map(|run| run.seconds_to_top).collect();
    let lasts: Vec<&str> = runs.iter().map(|run| run.last.as_str()).collect();
    json!({
        "runs": runs.iter().map(|run| json!({
            "seconds_to_top": run.seconds_to_top,
            "last": run.last,
            "late": run.late,
            "frames": run.received,
            "resolutions": run.resolutions,
        })).collect::<Vec<_>>(),
        "late_percent_median": median(runs.iter().map(late_percent).collect()),
        "seconds_to_top_median": (to_top.len() == runs.len()).then(|| median(to_top)),
        "last": lasts.join(","),
    })
}

/// Unthrottled and slow-link runs, interleaved, on one server whose store
/// holds the video before the first run.
pub(super) fn bench_adaptive(plan: &Plan, keys: &Arc<Vec<Identity>>, dir: &Path) -> Result<Value, String> {
    let videos = make_videos(dir, plan)?;
    let _ = fs::create_dir_all(dir.join("config"));
    // The store in the videos' directory, kept between benches: prepared once.
    let store = videos.join(".ciphercast");
    let server = ServerProcess::start_with(&videos, 16, &["--store", &store.to_string_lossy()])?;
    let (tally, reports) = Tally::new(usize::MAX);
    let mut member = Member::join(server.address, "lister".into(), &keys[0], tally)?;
    wait_prepared(&mut member, &reports, VIDEO)?;
    drop(member);
    let top = format!("{}p", plan.heights[plan.heights.len() - 1]);
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for i in 0..plan.adaptive_runs {
        fast.push(watch(&server, dir, &format!("fast{i}"), &top, None)?);
        slow.push(watch(&server, dir, &format!("slow{i}"), &top, Some(SLOW_LINK_KBPS))?);
        let (f, s) = (&fast[i], &slow[i]);
        eprintln!(
            "bench: adaptive run {}: unthrottled {} last={} late={}; at {SLOW_LINK_KBPS} kbit/s {} last={} late={}",
            i + 1,
            f.resolutions,
            f.last,
            f.late,
            s.resolutions,
            s.last,
            s.late
        );
    }
    Ok(json!({
        "video": VIDEO,
        "unthrottled": section(&fast),
        format!("max_kbps_{SLOW_LINK_KBPS}"): section(&slow),
    }))
}
