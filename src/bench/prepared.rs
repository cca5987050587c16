//! The prepared-library phase, run from the bench's main thread: how fast
//! the server prepares a video (every rendition, one thread), and how many
//! viewers it then serves in real time when no two of them watch the same
//! frame at the same moment — a class watching at its own pace.
//!
//! One 60-second video at the bench's heights, its store made fresh once
//! (timed: `prepare.frames_per_second`), then steps of N viewers on a fresh
//! server with the frame cache off (`--cache-mb 0`: every frame from the
//! store). Viewer i starts at frame i·(F − W)/N, F the video's frames, W a
//! window's; each watches one window at native pace and stops. A step passes
//! when every viewer received every frame of its window in order and the p99
//! lateness stays under one frame interval.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use ciphercast::shared::crypto::Identity;
use ciphercast::shared::message::ClientMessage;
use ciphercast::shared::video::Pace;

use super::clients::{Arrival, Member, Report, Tally};
use super::generate_once;
use super::plan::Plan;
use super::server_process::{ServerProcess, cpu_ms, rss_kib};
use super::viewers::watch;

/// The one video of this phase.
const VIDEO: &str = "Video_1";

/// Generates the phase's video (once) in `dir/prepared-<seconds>s`, alone in its directory.
fn make_video(dir: &Path, plan: &Plan) -> Result<PathBuf, String> {
    let videos = dir.join(format!("prepared-{}s", plan.prepared_video_seconds));
    let last = format!("{VIDEO}_{}p.mp4", plan.heights[plan.heights.len() - 1]);
    for file in generate_once(&videos, plan.prepared_video_seconds, &plan.heights, &last, "the prepared phase")? {
        // The generator makes two videos; the phase measures one.
        if !file.file_name().is_some_and(|n| n.to_string_lossy().starts_with(VIDEO)) {
            fs::remove_file(&file).map_err(|e| e.to_string())?;
        }
    }
    Ok(videos)
}

/// A server for this phase: the store, no frame cache.
fn server(videos: &Path, store: &Path, max_clients: usize) -> Result<ServerProcess, String> {
    let store = store.to_string_lossy();
    ServerProcess::start_with(videos, max_clients, &["--cache-mb", "0", "--store", &store])
}

/// Waits until the server lists `video` as prepared; returns how long that took.
pub(super) fn wait_prepared(
    member: &mut Member,
    reports: &crossbeam_channel::Receiver<Report>,
    video: &str,
) -> Result<Duration, String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1800) {
        member.send(&ClientMessage::ListVideos)?;
        loop {
            match reports.recv_timeout(Duration::from_secs(10)) {
                Ok(Report::List(videos)) => {
                    if videos.iter().any(|v| v.name == video && v.prepared == Some(1.0)) {
                        return Ok(started.elapsed());
                    }
                    break;
                }
                Ok(_) => {}
                Err(_) => return Err("the server did not answer list_videos".into()),
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{video} was not prepared within 30 minutes"))
}

/// The outcome of one step.
struct Step {
    complete: bool,
    p99_lateness_ms: f64,
    interval_ms: f64,
    cpu_ms_per_frame: f64,
    rss_mib: f64,
}

/// `count` viewers, each watching one window of the video from its own start.
fn step(keys: &Arc<Vec<Identity>>, videos: &Path, store: &Path, count: usize, plan: &Plan) -> Result<Step, String> {
    let server = server(videos, store, count + 16)?;
    let (tally, reports) = Tally::new(usize::MAX);
    let mut members = Vec::with_capacity(count);
    for i in 0..count {
        members.push(Member::join(server.address, format!("p{i}"), &keys[i % keys.len()], tally.clone())?);
    }
    drop(tally);
    wait_prepared(&mut members[0], &reports, VIDEO)?;
    let frames = (plan.prepared_video_seconds * 30.0) as usize;
    let window = (plan.prepared_window.as_secs_f64() * 30.0) as usize;
    thread::sleep(Duration::from_millis(200 + count as u64));
    let cpu_before = cpu_ms(server.pid());
    for (i, member) in members.iter_mut().enumerate() {
        let start = (i * (frames - window) / count) as u32;
        member.send(&ClientMessage::Play {
            video: VIDEO.into(),
            pace: Pace::Native,
            start: Some(start),
            plan: None,
        })?;
    }
    thread::sleep(plan.prepared_window / 2);
    let rss_mib = rss_kib(server.pid()) / 1024.0;
    thread::sleep(plan.prepared_window - plan.prepared_window / 2);
    for member in &mut members {
        member.send(&ClientMessage::Stop { stream: 1 })?;
    }
    // Every frame of the window, in order: none skipped, most of a window's worth.
    let window_in_order = |frames: &[Arrival], _| {
        frames.windows(2).all(|pair| pair[1].sequence == pair[0].sequence + 1) && frames.len() * 10 >= window * 9
    };
    let watched = watch(&reports, count, Duration::from_secs(60), window_in_order)?;
    let cpu = cpu_ms(server.pid()) - cpu_before;
    drop(members);
    drop(server);
    Ok(Step {
        complete: watched.complete,
        p99_lateness_ms: watched.p99_lateness_ms,
        interval_ms: watched.interval_ms,
        cpu_ms_per_frame: cpu / watched.delivered.max(1) as f64,
        rss_mib,
    })
}

/// Prepares the video into a fresh store (timed), then steps up the viewers;
/// returns the `prepare` section and the phase's part of `viewers`.
pub(super) fn bench_prepared(plan: &Plan, keys: &Arc<Vec<Identity>>, dir: &Path) -> Result<(Value, Value), String> {
    let videos = make_video(dir, plan)?;
    let store = dir.join("store");
    let _ = fs::remove_dir_all(&store);
    let prepare_seconds = {
        let server = server(&videos, &store, 4)?;
        let (tally, reports) = Tally::new(usize::MAX);
        let mut member = Member::join(server.address, "timer".into(), &keys[0], tally)?;
        let took = wait_prepared(&mut member, &reports, VIDEO)?;
        drop(member);
        took.as_secs_f64()
    };
    let source_frames = plan.prepared_video_seconds * 30.0;
    let store_bytes: u64 = fs::read_dir(&store)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "frames"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!("bench: prepared {source_frames} frames × {} renditions in {prepare_seconds:.1} s", plan.heights.len());

    let mut steps = Vec::new();
    let mut passed: Option<(usize, Step)> = None;
    let mut rss_at_100 = Value::Null;
    for &count in &plan.prepared_steps {
        let run = step(keys, &videos, &store, count, plan)?;
        eprintln!(
            "bench: {count} viewers of one prepared video at distinct positions: p99 lateness {:.1} ms, complete {}",
            run.p99_lateness_ms, run.complete
        );
        steps.push(json!({ "prepared_viewers": count, "complete": run.complete, "p99_lateness_ms": run.p99_lateness_ms, "server_cpu_ms_per_frame": run.cpu_ms_per_frame, "server_rss_mib": run.rss_mib }));
        if count == 100 {
            rss_at_100 = json!(run.rss_mib);
        }
        if !run.complete || run.p99_lateness_ms >= run.interval_ms {
            break;
        }
        passed = Some((count, run));
    }
    let prepare = json!({
        "frames_per_second": source_frames / prepare_seconds.max(0.001),
        "renditions": plan.heights.len(),
        "store_mb_per_minute": store_bytes as f64 / 1e6 / (plan.prepared_video_seconds / 60.0),
    });
    let viewers = json!({
        "distinct_prepared_realtime_max": passed.as_ref().map_or(0, |(count, _)| *count),
        "server_cpu_ms_per_frame_prepared": passed.as_ref().map_or(0.0, |(_, run)| run.cpu_ms_per_frame),
        "server_rss_mib_prepared_100": rss_at_100,
        "prepared_steps": steps,
    });
    Ok((prepare, viewers))
}
