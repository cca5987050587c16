//! The streaming thread: one per playback, owned by the viewer's handler.
//!
//! It opens the video's files, decodes frames in the order of the plan,
//! encodes each as JPEG, and queues it into the viewer's small video queue,
//! which the viewer's writer thread drains. When the queue is full (the
//! viewer reads slowly) only this thread waits: no frame is dropped, nobody
//! else slows down, and the handler thread keeps reading the viewer's chat.
//! Because playback never runs on the handler or acceptor thread, a client
//! joining mid-stream cannot disturb it — the original's join-during-video
//! crash has no place to happen.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{SendTimeoutError, Sender};
use log::{debug, info};
use opencv::core::{Mat, Vector};
use opencv::imgcodecs::{IMWRITE_JPEG_QUALITY, imencode};
use opencv::prelude::*;
use opencv::videoio::{CAP_ANY, CAP_PROP_FPS, CAP_PROP_FRAME_COUNT, CAP_PROP_POS_FRAMES, VideoCapture};

use super::cache::{FileInfo, FrameCache, FrameKey};
use super::library::{Resolution, Video};
use crate::shared::frame::{FrameKind, HEADER_LEN};
use crate::shared::limits::{LOOKAHEAD_FRAMES, MAX_FRAME_LEN};
use crate::shared::message::{ServerMessage, encode};
use crate::shared::video::{EndReason, FrameHeader, Pace, PlanPart, plan_ranges};

/// Something queued for a viewer's writer by its streaming thread.
pub(crate) enum VideoItem {
    /// A complete control frame (stream start or end), kept in order with the pictures.
    Control(Arc<[u8]>),
    /// A picture: the frame and video headers, then the JPEG, written together.
    Frame {
        /// Frame header and video header.
        head: Vec<u8>,
        /// The JPEG bytes, shareable among viewers.
        jpeg: Arc<[u8]>,
    },
}

/// Shared between a streaming thread and its handler.
#[derive(Default)]
pub(crate) struct Flags {
    /// Set by the handler: stop at the next frame.
    pub(crate) stop: AtomicBool,
    /// Set by the streaming thread just before it queues the stream's end, so
    /// a client that has read the end may start the next playback at once.
    pub(crate) ended: AtomicBool,
}

/// One playback request.
pub(crate) struct Job {
    /// Stream id within the connection.
    pub(crate) id: u32,
    /// The video, as found in the library.
    pub(crate) video: Video,
    /// How fast to send.
    pub(crate) pace: Pace,
    /// JPEG quality, 1–100.
    pub(crate) jpeg_quality: i32,
    /// Frames already encoded, shared by every viewer.
    pub(crate) cache: Arc<FrameCache>,
}

/// How a stream ended, for its end message.
struct Ended {
    reason: EndReason,
    frames: u32,
    message: Option<String>,
}

/// How long a streaming thread sleeps at most before looking at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Runs one playback to its end and queues the end message.
pub(crate) fn run(job: Job, queue: Sender<VideoItem>, flags: Arc<Flags>) {
    // A bug in decoding must end this stream with an error, not leave the
    // viewer (and the handler waiting for `ended`) hanging.
    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream(&job, &queue, &flags.stop)))
        .unwrap_or_else(|_| Ended { reason: EndReason::Error, frames: 0, message: Some("internal error".into()) });
    info!("stream {} of {}: {:?} after {} frame(s)", job.id, job.video.name, ended.reason, ended.frames);
    let end =
        ServerMessage::StreamEnd { stream: job.id, reason: ended.reason, frames: ended.frames, message: ended.message };
    flags.ended.store(true, Ordering::SeqCst);
    if let Ok(bytes) = encode(&end) {
        // Blocks at most until the writer drains a frame or gives up on the socket.
        let _ = queue.send(VideoItem::Control(bytes.into()));
    }
}

fn stream(job: &Job, queue: &Sender<VideoItem>, stop: &AtomicBool) -> Ended {
    let failed = |frames: u32, message: String| Ended { reason: EndReason::Error, frames, message: Some(message) };
    let sources: Vec<Source> = job.video.resolutions.iter().map(|r| Source::new(r, &job.cache)).collect();
    let mut infos = Vec::with_capacity(sources.len());
    for source in &sources {
        match job.cache.file_info(&source.path, source.modified, || probe(&source.path)) {
            Ok(info) => infos.push(info),
            Err(message) => return failed(0, message),
        }
    }
    let total = infos.iter().map(|i| i.frames).min().unwrap_or(0);
    // The lowest resolution sets the pace.
    let fps = infos.first().map_or(30.0, |i| i.fps);
    let parts = plan_ranges(total, sources.len());
    if parts.is_empty() {
        return failed(0, format!("{} has no frames", job.video.name));
    }
    let plan = parts
        .iter()
        .map(|&(i, first, last)| PlanPart { resolution: job.video.resolutions[i].label.clone(), first, last })
        .collect();
    let start = ServerMessage::StreamStart { stream: job.id, video: job.video.name.clone(), fps, frames: total, plan };
    // Position each part's file at its first frame before the clock starts,
    // so a change of resolution mid-stream costs no seek (unless the frame
    // is cached already, which costs nothing at all).
    for &(i, first, _) in &parts {
        if !job.cache.contains(&sources[i].key(first, job.jpeg_quality))
            && let Err(message) = sources[i].decoder().seek(first)
        {
            return failed(0, message);
        }
    }
    let delivered = encode(&start).is_ok_and(|bytes| queue.send(VideoItem::Control(bytes.into())).is_ok());
    if !delivered {
        return Ended { reason: EndReason::Stopped, frames: 0, message: None };
    }

    let mut encoder = Encoder::new(job.jpeg_quality);
    let mut sent = 0u32;
    let started = Instant::now();
    // Every frame of the plan, in order: (part's source, frame index, label).
    let mut frames = parts.iter().flat_map(|&(i, first, last)| (first..=last).map(move |index| (i, index)));
    // Frames encoded ahead of their time, with the moment each is due.
    let mut ready: VecDeque<(Instant, VideoItem)> = VecDeque::with_capacity(LOOKAHEAD_FRAMES);
    // A frame that cannot be sent ends the stream, after those before it.
    let mut failure: Option<String> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ended { reason: EndReason::Stopped, frames: sent, message: None };
        }
        // Deliver whatever is due (at once with --pace none).
        if let Some((due, _)) = ready.front()
            && (job.pace == Pace::None || *due <= Instant::now())
            && let Some((_, item)) = ready.pop_front()
        {
            if !deliver(queue, item, stop) {
                return Ended { reason: EndReason::Stopped, frames: sent, message: None };
            }
            sent += 1;
            continue;
        }
        // Otherwise work ahead, so that a moment's competition for the CPU
        // (other streams, a resolution change) costs slack, not lateness.
        if ready.len() < LOOKAHEAD_FRAMES
            && failure.is_none()
            && let Some((i, index)) = frames.next()
        {
            let source = &sources[i];
            // A frame another viewer already encoded costs no OpenCV work.
            let key = source.key(index, job.jpeg_quality);
            let jpeg = match job.cache.get_or_encode(&key, || source.decoder().encode(index, &mut encoder)) {
                Ok(jpeg) => jpeg,
                Err(message) => {
                    failure = Some(message);
                    continue;
                }
            };
            let pts = Duration::from_secs_f64(f64::from(index) / fps);
            let header = FrameHeader {
                stream: job.id,
                sequence: index,
                pts_micros: pts.as_micros() as u64,
                resolution: job.video.resolutions[i].label.clone(),
            };
            let Some(item) = frame_item(&header, jpeg) else {
                failure = Some(format!("frame {index} of {} exceeds the frame size limit", file_name(&source.path)));
                continue;
            };
            ready.push_back((started + pts, item));
            continue;
        }
        // Nothing to encode: sleep to the next frame's time rather than spin
        // (in short naps, so that a stop is noticed).
        match ready.front() {
            Some((due, _)) => thread::sleep(due.saturating_duration_since(Instant::now()).min(STOP_CHECK)),
            None => break,
        }
    }
    if let Some(message) = failure {
        return failed(sent, message);
    }
    debug!("stream {} finished in {:?}", job.id, started.elapsed());
    Ended { reason: EndReason::Finished, frames: sent, message: None }
}

/// One resolution's file as a stream sees it.
struct Source {
    path: Arc<Path>,
    modified: Option<SystemTime>,
    /// Shared with every other stream of this file.
    decoder: Arc<Mutex<Decoder>>,
}

impl Source {
    fn new(resolution: &Resolution, cache: &FrameCache) -> Source {
        let path: Arc<Path> = Arc::from(resolution.path.as_path());
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Source { decoder: cache.decoder(&path, modified), path, modified }
    }

    fn key(&self, index: u32, quality: i32) -> FrameKey {
        FrameKey { file: Arc::clone(&self.path), modified: self.modified, index, quality }
    }

    fn decoder(&self) -> MutexGuard<'_, Decoder> {
        self.decoder.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A file's OpenCV capture, opened when a frame is first needed and shared
/// by every stream of the file through the cache.
pub(crate) struct Decoder {
    path: Arc<Path>,
    capture: Option<VideoCapture>,
    /// The index of the frame the capture will read next.
    position: u32,
}

impl Decoder {
    pub(crate) fn new(path: Arc<Path>) -> Decoder {
        Decoder { path, capture: None, position: 0 }
    }

    /// Opens the file if needed and positions it at frame `index`.
    fn seek(&mut self, index: u32) -> Result<&mut VideoCapture, String> {
        if self.capture.is_none() {
            self.capture = Some(open(&self.path)?);
            self.position = 0;
        }
        let file = file_name(&self.path);
        let capture = self.capture.as_mut().ok_or_else(|| format!("cannot open {file}"))?;
        if self.position != index {
            if !capture.set(CAP_PROP_POS_FRAMES, f64::from(index)).unwrap_or(false) {
                return Err(format!("cannot seek to frame {index} of {file}"));
            }
            self.position = index;
        }
        Ok(capture)
    }

    /// Decodes frame `index` and encodes it as JPEG.
    fn encode(&mut self, index: u32, encoder: &mut Encoder) -> Result<Vec<u8>, String> {
        let file = file_name(&self.path);
        let capture = self.seek(index)?;
        match capture.read(&mut encoder.picture) {
            Ok(true) if !encoder.picture.empty() => {}
            _ => {
                // Where the capture stands after a failed read is unknown.
                self.capture = None;
                return Err(format!("cannot read frame {index} of {file}"));
            }
        }
        self.position = index + 1;
        if !imencode(".jpg", &encoder.picture, &mut encoder.jpeg, &encoder.params).unwrap_or(false) {
            return Err(format!("cannot encode frame {index} of {file}"));
        }
        Ok(encoder.jpeg.to_vec())
    }
}

/// Buffers reused from frame to frame.
struct Encoder {
    params: Vector<i32>,
    picture: Mat,
    jpeg: Vector<u8>,
}

impl Encoder {
    fn new(quality: i32) -> Encoder {
        Encoder {
            params: Vector::from_slice(&[IMWRITE_JPEG_QUALITY, quality]),
            picture: Mat::default(),
            jpeg: Vector::new(),
        }
    }
}

fn open(path: &Path) -> Result<VideoCapture, String> {
    let file = file_name(path);
    let capture = VideoCapture::from_file(path, CAP_ANY).map_err(|e| format!("cannot open {file}: {e}"))?;
    if !capture.is_opened().unwrap_or(false) {
        return Err(format!("cannot open {file}: not a video OpenCV can read"));
    }
    Ok(capture)
}

/// Reads a file's frame count and rate (the capture is closed again).
fn probe(path: &Path) -> Result<FileInfo, String> {
    let capture = open(path)?;
    let count = capture.get(CAP_PROP_FRAME_COUNT).unwrap_or(0.0);
    let frames = if count.is_finite() && count > 0.0 { count.min(f64::from(u32::MAX)) as u32 } else { 0 };
    let fps = capture.get(CAP_PROP_FPS).ok().filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0).unwrap_or(30.0);
    Ok(FileInfo { frames, fps })
}

/// A file's name without its directory: error messages never reveal the server's paths.
fn file_name(path: &std::path::Path) -> String {
    path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Builds the queued picture: the frame header (length, kind 1), the video
/// header, then the JPEG. `None` if it would exceed the frame size limit.
fn frame_item(header: &FrameHeader, jpeg: Arc<[u8]>) -> Option<VideoItem> {
    let mut head = Vec::with_capacity(HEADER_LEN + 24);
    head.extend_from_slice(&[0; 4]);
    head.push(FrameKind::Video as u8);
    header.encode_into(&mut head);
    let length = u32::try_from(head.len() - 4 + jpeg.len()).ok().filter(|&l| l <= MAX_FRAME_LEN)?;
    head[..4].copy_from_slice(&length.to_be_bytes());
    Some(VideoItem::Frame { head, jpeg })
}

/// Queues a picture, waiting while the viewer's queue is full but giving up
/// as soon as the stream is stopped or the viewer is gone.
fn deliver(queue: &Sender<VideoItem>, mut item: VideoItem, stop: &AtomicBool) -> bool {
    loop {
        match queue.send_timeout(item, Duration::from_millis(50)) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(back)) if !stop.load(Ordering::Relaxed) => item = back,
            Err(_) => return false,
        }
    }
}
