//! The viewers phase, run from the bench's main thread: how many clients can
//! watch in real time at once — all the same video (which the server's frame
//! cache shares), or each a distinct video nobody has played (every frame
//! decoded and JPEG-encoded anew) — and what one such cold frame costs.
//!
//! Each viewer's reader thread records when every frame arrived; lateness
//! is measured as the client's `late` counter defines it: arrival − (that
//! viewer's first arrival + the frame's presentation time).

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use ciphercast::shared::crypto::Identity;
use ciphercast::shared::limits::DEFAULT_JPEG_QUALITY;
use ciphercast::shared::message::ClientMessage;
use ciphercast::shared::video::Pace;

use crossbeam_channel::Receiver;

use super::clients::{Arrival, Member, Report, Tally};
use super::plan::Plan;
use super::report::{ms, percentile};
use super::server_process::{ServerProcess, cpu_ms};

/// The outcome of `count` viewers watching at once.
struct ViewerRun {
    /// Every viewer received every frame its stream announced.
    complete: bool,
    p99_lateness_ms: f64,
    /// One frame interval of the video: the lateness a step may not reach.
    interval_ms: f64,
    cpu_ms_per_frame: f64,
}

/// `count` viewers join a fresh server and press play at once, at native pace.
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
        member.send(&ClientMessage::Play { video, pace: Pace::Native, start: None, plan: None })?;
    }
    // Every frame the stream announced.
    let every_frame = |frames: &[Arrival], announced: u32| frames.len() == announced as usize && announced > 0;
    let watched = watch(&results, count, Duration::from_secs(120), every_frame)?;
    let cpu = cpu_ms(server.pid()) - cpu_before;
    drop(members);
    drop(server);
    Ok(ViewerRun {
        complete: watched.complete,
        p99_lateness_ms: watched.p99_lateness_ms,
        interval_ms: watched.interval_ms,
        cpu_ms_per_frame: cpu / watched.delivered.max(1) as f64,
    })
}

/// What the stream reports of `count` viewers add up to.
pub(super) struct Watched {
    /// Every viewer's stream passed the phase's check.
    pub(super) complete: bool,
    pub(super) p99_lateness_ms: f64,
    /// One frame interval of the video.
    pub(super) interval_ms: f64,
    /// Frames received, all viewers together.
    pub(super) delivered: usize,
}

/// Waits (at most `limit` each) for the stream reports of `count` viewers;
/// `check` says whether one stream got what it should (its frames, and the
/// count its start announced). Lateness is measured as the client's `late`
/// counter defines it: arrival − (that viewer's first arrival + the frame's
/// presentation time − the first frame's).
pub(super) fn watch(
    reports: &Receiver<Report>,
    count: usize,
    limit: Duration,
    mut check: impl FnMut(&[Arrival], u32) -> bool,
) -> Result<Watched, String> {
    let mut lateness = Vec::new();
    let mut watched = Watched { complete: true, p99_lateness_ms: 0.0, interval_ms: 33.3, delivered: 0 };
    for _ in 0..count {
        loop {
            match reports.recv_timeout(limit) {
                Ok(Report::Stream { frames, announced, fps }) => {
                    watched.interval_ms = 1000.0 / fps.max(1.0);
                    watched.complete &= check(&frames, announced);
                    watched.delivered += frames.len();
                    if let Some(first) = frames.first() {
                        for frame in &frames {
                            let due = first.at + Duration::from_micros(frame.pts.saturating_sub(first.pts));
                            lateness.push(ms(frame.at.saturating_duration_since(due)));
                        }
                    }
                    break;
                }
                Ok(_) => {}
                Err(_) => return Err(format!("a viewer of {count} never finished")),
            }
        }
    }
    lateness.sort_by(f64::total_cmp);
    watched.p99_lateness_ms = percentile(&lateness, 99.0);
    Ok(watched)
}

/// Tries the plan's steps of viewers, in order, until one fails; returns the
/// `viewers` section of results.json.
pub(super) fn bench_viewers(plan: &Plan, keys: &Arc<Vec<Identity>>, videos: &Path) -> Result<Value, String> {
    let mut steps = Vec::new();
    let same = largest_realtime(keys, videos, &plan.same_video_steps, false, &mut steps)?;
    let cold = largest_realtime(keys, videos, &plan.cold_steps, true, &mut steps)?;
    let (same_max, cpu_per_frame, p99) =
        same.map_or((0, 0.0, 0.0), |(count, run)| (count, run.cpu_ms_per_frame, run.p99_lateness_ms));
    let top = plan.heights.iter().copied().max().unwrap_or(0);
    Ok(json!({
        "same_video_realtime_max": same_max,
        "distinct_videos_realtime_max_cold": cold.map_or(0, |(count, _)| count),
        "server_cpu_ms_per_frame": cpu_per_frame,
        "p99_lateness_ms": p99,
        "cold_frame_ms": frame_costs(&videos.join(format!("Video_1_{top}p.mp4")), top)?,
        "steps": steps,
    }))
}

/// Runs a step of `count` viewers for each of `counts`, in order, until one
/// is not in real time (p99 lateness of a frame interval or more); records
/// each step in `steps`. Returns the largest passing step and its run. A
/// step in which a viewer missed a frame is an error, not a slow step.
fn largest_realtime(
    keys: &Arc<Vec<Identity>>,
    videos: &Path,
    counts: &[usize],
    distinct: bool,
    steps: &mut Vec<Value>,
) -> Result<Option<(usize, ViewerRun)>, String> {
    let (what, key) = if distinct {
        ("viewers of distinct cold videos", "distinct_viewers")
    } else {
        ("viewers of one video", "viewers")
    };
    let mut passed = None;
    for &count in counts {
        let run = viewers_once(keys, videos, count, distinct)?;
        eprintln!("bench: {count} {what}: p99 lateness {:.1} ms, complete {}", run.p99_lateness_ms, run.complete);
        steps.push(json!({ key: count, "complete": run.complete, "p99_lateness_ms": run.p99_lateness_ms, "server_cpu_ms_per_frame": run.cpu_ms_per_frame }));
        if !run.complete {
            return Err(format!("{count} {what} did not all receive every frame"));
        }
        if run.p99_lateness_ms >= run.interval_ms {
            break;
        }
        passed = Some((count, run));
    }
    Ok(passed)
}

/// What one frame of the top resolution costs a cold stream, measured here
/// with the server's own calls: OpenCV decoding, then JPEG encoding at the
/// server's default quality. Four cold streams need four times their sum
/// per frame interval.
fn frame_costs(path: &Path, height: u32) -> Result<Value, String> {
    use opencv::core::{Mat, Vector};
    use opencv::imgcodecs::{IMWRITE_JPEG_QUALITY, imencode};
    use opencv::prelude::*;
    use opencv::videoio::{CAP_FFMPEG, VideoCapture};

    let fail = |e: opencv::Error| format!("{}: {e}", path.display());
    let mut capture = VideoCapture::from_file(path, CAP_FFMPEG).map_err(fail)?;
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
