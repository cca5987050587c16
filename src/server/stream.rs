//! The streaming thread: one per playback, started and joined by the
//! viewer's handler thread.
//!
//! Its whole job, frame after frame of the plan: take the picture, wait for
//! its presentation time ([`Pacer`]), and queue it for the viewer's writer
//! thread. The plan is the assignment's thirds, or [`Adaptive`]: asked
//! before each frame, it may switch to another resolution. The picture comes from the first of these that has it: the
//! prepared library on disk ([`store`](super::store): read, no OpenCV work),
//! the shared [`FrameCache`] (another viewer encoded it a moment ago), or the
//! file itself (decode, encode as JPEG). A frame that does not decode is
//! skipped (and logged); the stream goes on.
//!
//! Because playback runs on its own thread and touches neither the registry
//! nor a socket, a client joining mid-stream cannot disturb it — the
//! original's join-during-video crash has no place to happen. And because it
//! writes only into its own viewer's small video queue, a slow viewer slows
//! only its own stream; the handler thread keeps reading the viewer's chat.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use log::{info, warn};

use super::adaptive::Adaptive;
use super::cache::{FrameCache, FrameKey};
use super::control::{Command, Control, Flags, Steer};
use super::damaged::Damaged;
use super::decoder::{Decoder, Decoders, Encoder, FileInfo, FrameError, file_name};
use super::library::{Resolution, Video};
use super::pacing::Pacer;
use super::plan::{Plan, switch_state};
use super::prepare::Prepared;
use super::store::{Reader, Slice};
use super::video_item::{VideoItem, frame_item};
use super::web::metrics::Traffic;
use super::web::{StreamReport, Web};
use crate::shared::message::{ServerMessage, encode};
use crate::shared::video::{EndReason, Pace, PlanKind, PlanPart, plan_ranges};

/// One playback request.
pub(crate) struct Job {
    /// Stream id within the connection.
    pub(crate) id: u32,
    /// The video, as found in the library.
    pub(crate) video: Video,
    /// How fast to send.
    pub(crate) pace: Pace,
    /// The first frame to send.
    pub(crate) start: u32,
    /// Which resolution each frame comes from.
    pub(crate) plan: PlanKind,
    /// JPEG quality, 1–100.
    pub(crate) jpeg_quality: i32,
    /// Frames already encoded, shared by every viewer.
    pub(crate) cache: Arc<FrameCache>,
    /// Open files, shared by every viewer.
    pub(crate) decoders: Arc<Decoders>,
    /// The prepared library.
    pub(crate) prepared: Arc<Prepared>,
    /// The server's counts: where pictures came from.
    pub(crate) traffic: Arc<Traffic>,
    /// The web page, told of the stream's progress (with `--web`), and the viewer's name.
    pub(crate) web: Option<Arc<Web>>,
    pub(crate) viewer: String,
}

/// How a stream ended, for its end message.
struct Ended {
    reason: EndReason,
    /// Frames sent.
    frames: u32,
    /// The video's frame count, as far as the stream learned it (`None`:
    /// it ended before it had a plan).
    total: Option<u32>,
    message: Option<String>,
}

impl Ended {
    fn stopped(frames: u32, total: u32) -> Ended {
        Ended { reason: EndReason::Stopped, frames, total: Some(total), message: None }
    }

    fn failed(frames: u32, total: u32, message: String) -> Ended {
        Ended { reason: EndReason::Error, frames, total: Some(total), message: Some(message) }
    }

    /// It could not start: no plan, so no count to tell.
    fn refused(message: String) -> Ended {
        Ended { reason: EndReason::Error, frames: 0, total: None, message: Some(message) }
    }
}

/// The ends of a viewer's video queue a streaming thread holds: it sends
/// into it, and takes back what a pause, a seek or a step down made stale.
#[derive(Clone)]
pub(crate) struct Queue {
    pub(crate) sender: Sender<VideoItem>,
    pub(crate) unsent: Receiver<VideoItem>,
    /// The writer's count of video bytes it got into the socket.
    pub(crate) written: Arc<AtomicU64>,
}

/// Runs one playback to its end and queues the end message.
pub(crate) fn run(job: Job, queue: Queue, commands: Receiver<Command>, flags: Arc<Flags>) {
    let control = Control {
        stream: job.id,
        stop: &flags.stop,
        commands,
        queue: queue.sender.clone(),
        unsent: queue.unsent,
        written: queue.written,
        filled: Cell::new(false),
    };
    // A bug in decoding must end this stream with an error, not leave the
    // viewer (and the handler waiting for `ended`) hanging.
    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream(&job, &control)))
        .unwrap_or_else(|_| Ended::refused("internal error".into()));
    info!("stream {} of {}: {:?} after {} frame(s)", job.id, job.video.name, ended.reason, ended.frames);
    let reason = format!("{:?}", ended.reason).to_lowercase();
    StreamReport::new(job.web.clone(), &job.viewer, job.id, &job.video.name, "").ended(&reason);
    let end = ServerMessage::StreamEnd {
        stream: job.id,
        reason: ended.reason,
        frames: ended.frames,
        total: ended.total,
        message: ended.message,
    };
    flags.ended.store(true, Ordering::SeqCst);
    if let Ok(bytes) = encode(&end) {
        // Blocks at most until the writer drains a frame or gives up on the socket.
        let _ = control.send(VideoItem::Control(bytes.into()));
    }
}

fn stream(job: &Job, control: &Control) -> Ended {
    let mut sources = open_sources(job);
    let Outline { start, fps, total, mut plan } = match outline(job, &sources, control.written()) {
        Ok(plan) => plan,
        Err(message) => return Ended::refused(message),
    };
    if job.start >= total {
        return Ended::failed(0, total, format!("{} has no frame {} (it has {total})", job.video.name, job.start));
    }
    if let Err(message) = position(job, &sources, &plan.ranges(total), job.start) {
        return Ended::failed(0, total, message);
    }
    if !encode(&start).is_ok_and(|bytes| control.send(VideoItem::Control(bytes.into()))) {
        return Ended::stopped(0, total);
    }

    let mut encoder = Encoder::new(job.jpeg_quality);
    let mut pacer = Pacer::new(control, job.pace, fps);
    let plan_name = if matches!(plan, Plan::Adaptive(_)) { "adaptive" } else { "thirds" };
    let mut report = StreamReport::new(job.web.clone(), &job.viewer, job.id, &job.video.name, plan_name);
    let mut damaged = Damaged { video: &job.video.name, run: None };
    let mut index = job.start;
    loop {
        if control.stopped() || pacer.gone {
            return Ended::stopped(pacer.sent, total);
        }
        // A pause, resume or seek from the viewer: applied between frames.
        if control.halted() {
            damaged.end_run();
            let next = pacer.take_back().unwrap_or(index);
            match control.steer(next, total - 1, &mut || sources.clear()) {
                Steer::Play(next) => index = next,
                Steer::Stop => return Ended::stopped(pacer.sent, total),
            }
            if sources.is_empty() {
                sources = open_sources(job);
            }
            if let Err(message) = position(job, &sources, &plan.ranges(total), index) {
                return Ended::failed(pacer.sent, total, message);
            }
            pacer.restart();
            plan.restart(index, control);
            // What the viewer was told of the resolution may have gone with
            // what was taken back: with the adaptive plan, tell it again.
            if let Some(switch) = plan.current() {
                announce(&mut pacer, job.id, index, &sources[switch.to].label, switch.measured_kbps);
            }
            continue;
        }
        if index >= total {
            if pacer.finish() {
                break;
            }
            continue;
        }
        // The adaptive plan may switch here; a step down takes back what
        // was queued at the old resolution and sends it again at the new.
        if let Some(switch) = plan.decide(index, control) {
            if switch.down {
                index = pacer.take_back().unwrap_or(index);
            }
            announce(&mut pacer, job.id, index, &sources[switch.to].label, switch.measured_kbps);
        }
        // The resolution's file the plan takes this frame from.
        let Some(i) = plan.source(index) else { break };
        let nominal = Duration::from_secs_f64(f64::from(index) / fps);
        match sources[i].picture(index, nominal, &mut encoder) {
            Ok((pts, picture)) => {
                damaged.end_run();
                let bytes = picture.wire_len();
                plan.queued(bytes);
                pacer.push(pts, index, picture);
                report.frame(index, &sources[i].label, bytes, pacer.sent, pacer.late);
            }
            Err(FrameError::Damaged) => damaged.skip(index),
            // The frames before it still go out, then the stream ends.
            Err(FrameError::Failed(message)) if pacer.finish() => return Ended::failed(pacer.sent, total, message),
            Err(FrameError::Failed(_)) => {}
        }
        index += 1;
    }
    // Frames that never decoded at the very end were never part of the video.
    let total = damaged.run.map_or(total, |(first, _)| first);
    damaged.end_run();
    Ended { reason: EndReason::Finished, frames: pacer.sent, total: Some(total), message: None }
}

/// Tells the viewer, in order with its pictures, the resolution from frame
/// `next_frame` on.
fn announce(pacer: &mut Pacer, stream: u32, next_frame: u32, resolution: &str, measured_kbps: u32) {
    if let Ok(bytes) = encode(&switch_state(stream, next_frame, resolution, measured_kbps)) {
        pacer.announce(VideoItem::Control(bytes.into()));
    }
}

/// One [`Source`] per resolution of the video.
fn open_sources(job: &Job) -> Vec<Source<'_>> {
    job.video.resolutions.iter().map(|r| Source::new(r, job)).collect()
}

/// Positions each part's file at its first frame from `from` on, before the
/// clock starts, so a change of resolution mid-stream costs no seek (unless
/// the frame is prepared or cached already, which costs no decoding at all).
fn position(job: &Job, sources: &[Source], parts: &[(usize, u32, u32)], from: u32) -> Result<(), String> {
    for &(i, first, last) in parts.iter().filter(|&&(_, _, last)| last >= from) {
        let first = first.max(from).min(last);
        if sources[i].reader.is_none()
            && !job.cache.contains(&sources[i].key(first))
            && let Err(FrameError::Failed(message)) = sources[i].decoder().seek(first)
        {
            return Err(message);
        }
    }
    Ok(())
}

/// What a stream will send.
struct Outline {
    /// The stream's start message.
    start: ServerMessage,
    /// Frames per second.
    fps: f64,
    /// Frames in the video (the plan covers them all).
    total: u32,
    /// Which source each frame comes from.
    plan: Plan,
}

/// The plan over the shortest file's frames, paced by the lowest
/// resolution: the assignment's thirds, or adaptive from the lowest up;
/// and the start message that announces it. `written` is the viewer's writer's byte count now.
fn outline(job: &Job, sources: &[Source], written: u64) -> Result<Outline, String> {
    let mut infos = Vec::with_capacity(sources.len());
    for source in sources {
        infos.push(source.info()?);
    }
    let total = infos.iter().map(|i| i.frames).min().unwrap_or(0);
    let fps = infos.first().map_or(30.0, |i| i.fps);
    let parts = plan_ranges(total, sources.len());
    if parts.is_empty() {
        return Err(format!("{} has no frames", job.video.name));
    }
    let renditions = sources.iter().map(|source| source.label.clone()).collect();
    let (parts_sent, plan) = match job.plan {
        PlanKind::Thirds => {
            let label = |i: usize| sources[i].label.clone();
            let sent = parts.iter().map(|&(i, first, last)| PlanPart { resolution: label(i), first, last }).collect();
            (sent, Plan::Thirds(parts))
        }
        PlanKind::Adaptive => {
            (Vec::new(), Plan::Adaptive(Adaptive::new(sources.len(), fps, job.start, Instant::now(), written)))
        }
    };
    let video = job.video.name.clone();
    let start = ServerMessage::StreamStart { stream: job.id, video, fps, frames: total, plan: parts_sent, renditions };
    Ok(Outline { start, fps, total, plan })
}

/// One resolution's file as a stream sees it.
struct Source<'a> {
    job: &'a Job,
    label: String,
    path: Arc<Path>,
    modified: Option<SystemTime>,
    /// Where this stream reads the file's prepared frames, if they are ready.
    reader: Option<Reader>,
    /// Shared with every other stream of this file.
    decoder: Arc<Mutex<Decoder>>,
}

impl<'a> Source<'a> {
    fn new(resolution: &Resolution, job: &'a Job) -> Source<'a> {
        let path: Arc<Path> = Arc::from(resolution.path.as_path());
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let reader = job.prepared.entry(&path).map(Reader::new);
        let decoder = job.decoders.decoder(&path, modified);
        Source { job, label: resolution.label.clone(), path, modified, reader, decoder }
    }

    /// Frame count and rate: the store's exact ones, or the file's probed.
    fn info(&self) -> Result<FileInfo, String> {
        match &self.reader {
            Some(reader) => Ok(FileInfo { frames: reader.frames(), fps: reader.fps() }),
            None => self.job.decoders.info(&self.path, self.modified),
        }
    }

    fn key(&self, index: u32) -> FrameKey {
        FrameKey { file: Arc::clone(&self.path), modified: self.modified, index, quality: self.job.jpeg_quality }
    }

    fn decoder(&self) -> MutexGuard<'_, Decoder> {
        self.decoder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frame `index` ready to queue, with its presentation time: from the
    /// store, from the cache, or decoded and encoded now.
    fn picture(
        &mut self,
        index: u32,
        nominal: Duration,
        encoder: &mut Encoder,
    ) -> Result<(Duration, VideoItem), FrameError> {
        let traffic = &self.job.traffic;
        let (jpeg, pts) = match self.prepared(index) {
            Some(frame) => {
                Traffic::add(&traffic.from_store, 1);
                frame?
            }
            None => {
                let mut encoded = false;
                let decode = || {
                    encoded = true;
                    self.decoder().decode_to_jpeg(index, nominal, encoder)
                };
                let frame = self.job.cache.get_or_encode(&self.key(index), decode)?;
                Traffic::add(if encoded { &traffic.encoded } else { &traffic.from_cache }, 1);
                (Slice::from(frame.jpeg), frame.pts)
            }
        };
        let too_big = || format!("frame {index} of {} exceeds the frame size limit", file_name(&self.path));
        let item =
            frame_item(self.job.id, index, pts, &self.label, jpeg).ok_or_else(|| FrameError::Failed(too_big()))?;
        Ok((pts, item))
    }

    /// Frame `index` from the store, if this file is prepared. A store file
    /// that cannot be read is given up for this stream (it decodes from
    /// here on) and handed back to the preparer.
    fn prepared(&mut self, index: u32) -> Option<Result<(Slice, Duration), FrameError>> {
        match self.reader.as_mut()?.frame(index) {
            Ok(Some(frame)) => Some(Ok(frame)),
            Ok(None) => Some(Err(FrameError::Damaged)),
            Err(e) => {
                warn!("{}: the store failed ({e}); decoding instead", file_name(&self.path));
                self.job.prepared.spoiled(&self.path);
                self.reader = None;
                None
            }
        }
    }
}
