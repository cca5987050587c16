//! Reading video files with OpenCV: open a file, learn its frame count and
//! rate, decode a frame, encode it as JPEG. Runs on the streaming threads.
//!
//! A file is opened once however many viewers play it: [`Decoders`] hands
//! every stream of a file the same [`Decoder`] behind a mutex, so frames are
//! read in order by whichever stream needs the next one nobody has encoded
//! yet (see [`FrameCache`](super::cache::FrameCache)) and the file is
//! decoded once, sequentially. A decoder closes when the last stream using
//! it ends.
//!
//! Real files are not as tidy as generated ones, and this file is where that
//! is absorbed:
//! - Only FFmpeg is asked to open a file (other backends fill the log with
//!   warnings about files they were never going to read).
//! - A container's frame count is an estimate. The probe checks it by
//!   decoding the frame it claims is last; when that fails, it searches back
//!   for the real last frame, so the plan covers frames that exist.
//! - A frame that does not decode (damaged data) is [`FrameError::Damaged`]:
//!   the stream skips it and goes on, the next read seeks past it.
//! - Each frame is shown at the time the decoder gives it, where the
//!   container has one, else at index ÷ rate.
//!
//! Error messages name the file, never its directory: they go to clients,
//! and a client has no business knowing the server's paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use log::info;
use opencv::core::{Mat, Vector};
use opencv::imgcodecs::{IMWRITE_JPEG_QUALITY, imencode};
use opencv::prelude::*;
use opencv::videoio::{
    CAP_FFMPEG, CAP_PROP_FPS, CAP_PROP_FRAME_COUNT, CAP_PROP_POS_FRAMES, CAP_PROP_POS_MSEC, VideoCapture,
};

use super::cache::Encoded;

/// What a file holds, as far as the plan is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FileInfo {
    /// Frames that decode: the container's count, or fewer where it overstates.
    pub(crate) frames: u32,
    /// Frames per second (the container's average rate).
    pub(crate) fps: f64,
}

/// Why a frame could not be had.
#[derive(Debug, PartialEq)]
pub(crate) enum FrameError {
    /// This frame does not decode or cannot be reached: skip it.
    Damaged,
    /// The file cannot be read at all, or a frame cannot be encoded.
    Failed(String),
}

/// A file as it is on disk now: a replaced file is a different file.
type FileKey = (PathBuf, Option<SystemTime>);

/// The decoders and file facts every streaming thread shares.
#[derive(Default)]
pub(crate) struct Decoders {
    /// One decoder per file, while any stream holds it.
    open: Mutex<HashMap<FileKey, Weak<Mutex<Decoder>>>>,
    /// Frame count and rate of every file probed so far (or being probed).
    infos: Mutex<HashMap<FileKey, Probed>>,
}

/// One file's probe, shared: the first stream to ask runs it, the others
/// wait for its answer instead of probing too (a class pressing play at
/// once would otherwise decode each file's last frame once per viewer).
type Probed = Arc<OnceLock<Result<FileInfo, String>>>;

impl Decoders {
    /// The decoder of a file, shared by every stream that plays it.
    pub(crate) fn decoder(&self, file: &Arc<Path>, modified: Option<SystemTime>) -> Arc<Mutex<Decoder>> {
        let mut open = lock(&self.open);
        let key = (file.to_path_buf(), modified);
        if let Some(decoder) = open.get(&key).and_then(Weak::upgrade) {
            return decoder;
        }
        open.retain(|_, weak| weak.strong_count() > 0);
        let decoder = Arc::new(Mutex::new(Decoder::new(file)));
        open.insert(key, Arc::downgrade(&decoder));
        decoder
    }

    /// The file's real frame count and rate, probed once per version of the
    /// file (the probe runs without the map's lock).
    pub(crate) fn info(&self, file: &Path, modified: Option<SystemTime>) -> Result<FileInfo, String> {
        let key = (file.to_path_buf(), modified);
        let probed = Arc::clone(lock(&self.infos).entry(key.clone()).or_default());
        let info = probed.get_or_init(|| probe(file)).clone();
        let mut infos = lock(&self.infos);
        if info.is_err() {
            // Whoever waited gets this answer; the next to ask probes again.
            infos.remove(&key);
        }
        // Forget older versions of this file.
        infos.retain(|(path, when), _| path != file || *when == modified);
        info
    }
}

/// A file's OpenCV capture, opened when a frame is first needed.
pub(crate) struct Decoder {
    path: Arc<Path>,
    capture: Option<VideoCapture>,
    /// The index of the frame the capture will read next, when known.
    position: Option<u32>,
}

impl Decoder {
    /// A decoder of `path`; the file is opened when a frame is first needed.
    pub(crate) fn new(path: &Path) -> Decoder {
        Decoder { path: Arc::from(path), capture: None, position: None }
    }

    /// Opens the file if needed and positions it at frame `index`.
    pub(crate) fn seek(&mut self, index: u32) -> Result<&mut VideoCapture, FrameError> {
        if self.capture.is_none() {
            self.capture = Some(open(&self.path).map_err(FrameError::Failed)?);
            self.position = Some(0);
        }
        let capture = self.capture.as_mut().ok_or_else(|| FrameError::Failed("no capture".into()))?;
        if self.position != Some(index) {
            if !capture.set(CAP_PROP_POS_FRAMES, f64::from(index)).unwrap_or(false) {
                self.position = None;
                return Err(FrameError::Damaged);
            }
            self.position = Some(index);
        }
        Ok(capture)
    }

    /// Decodes frame `index` and encodes it as JPEG. `nominal` is when the
    /// frame is due by its index, used where the container gives no time.
    pub(crate) fn decode_to_jpeg(
        &mut self,
        index: u32,
        nominal: Duration,
        encoder: &mut Encoder,
    ) -> Result<Encoded, FrameError> {
        let file = file_name(&self.path);
        let capture = self.seek(index)?;
        if !capture.read(&mut encoder.picture).unwrap_or(false) || encoder.picture.empty() {
            // Where the capture stands after a failed read is unknown: the next read seeks.
            self.position = None;
            return Err(FrameError::Damaged);
        }
        // OpenCV reports 0 where the decoder had no timestamp for the frame.
        let millis = capture.get(CAP_PROP_POS_MSEC).unwrap_or(0.0);
        let pts = Some(millis / 1000.0)
            .filter(|seconds| *seconds > 0.0)
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .unwrap_or(nominal);
        self.position = Some(index + 1);
        if !imencode(".jpg", &encoder.picture, &mut encoder.jpeg, &encoder.params).unwrap_or(false) {
            return Err(FrameError::Failed(format!("cannot encode frame {index} of {file}")));
        }
        Ok(Encoded { jpeg: encoder.jpeg.as_slice().into(), pts })
    }
}

/// One streaming thread's buffers, reused from frame to frame.
pub(crate) struct Encoder {
    params: Vector<i32>,
    picture: Mat,
    jpeg: Vector<u8>,
}

impl Encoder {
    /// Buffers for encoding at JPEG `quality` (1–100).
    pub(crate) fn new(quality: i32) -> Encoder {
        Encoder {
            params: Vector::from_slice(&[IMWRITE_JPEG_QUALITY, quality]),
            picture: Mat::default(),
            jpeg: Vector::new(),
        }
    }
}

/// Opens a file with FFmpeg, the one backend asked.
pub(crate) fn open(path: &Path) -> Result<VideoCapture, String> {
    let file = file_name(path);
    let capture = VideoCapture::from_file(path, CAP_FFMPEG).map_err(|e| format!("cannot open {file}: {e}"))?;
    if !capture.is_opened().unwrap_or(false) {
        return Err(format!("cannot open {file}: not a video FFmpeg can read"));
    }
    Ok(capture)
}

/// Reads a file's real frame count and its rate (the capture is closed again).
fn probe(path: &Path) -> Result<FileInfo, String> {
    let mut capture = open(path)?;
    let count = capture.get(CAP_PROP_FRAME_COUNT).unwrap_or(0.0);
    let claimed = if count.is_finite() && count > 0.0 { count.min(f64::from(u32::MAX)) as u32 } else { 0 };
    let fps = capture.get(CAP_PROP_FPS).ok().filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0).unwrap_or(30.0);
    let frames = if claimed > 0 && decodes(&mut capture, claimed - 1) {
        claimed
    } else {
        let frames = if claimed > 0 { search_last(&mut capture, claimed - 1) } else { count_frames(path)? };
        info!("{}: the container says {claimed} frames, {frames} decode", file_name(path));
        frames
    };
    Ok(FileInfo { frames, fps })
}

/// The frame count of a file whose frame `bad` does not decode: step back
/// from it, doubling the step, to a frame that does, then bisect between
/// the two for the last one that does. About 2·log₂(count) seeks.
fn search_last(capture: &mut VideoCapture, mut bad: u32) -> u32 {
    let mut step = 1;
    let mut good = loop {
        let Some(candidate) = bad.checked_sub(step) else {
            if bad > 0 && decodes(capture, 0) {
                break 0;
            }
            return 0;
        };
        if decodes(capture, candidate) {
            break candidate;
        }
        bad = candidate;
        step = step.saturating_mul(2);
    };
    while bad - good > 1 {
        let middle = good + (bad - good) / 2;
        if decodes(capture, middle) {
            good = middle;
        } else {
            bad = middle;
        }
    }
    good + 1
}

/// Counts the frames of a file whose container gives no count, by reading them all.
fn count_frames(path: &Path) -> Result<u32, String> {
    let mut capture = open(path)?;
    let mut frames = 0;
    while frames < u32::MAX && capture.grab().unwrap_or(false) {
        frames += 1;
    }
    Ok(frames)
}

/// Whether frame `index` decodes.
fn decodes(capture: &mut VideoCapture, index: u32) -> bool {
    capture.set(CAP_PROP_POS_FRAMES, f64::from(index)).unwrap_or(false) && capture.grab().unwrap_or(false)
}

/// A file's name without its directory.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Takes a lock; the maps stay consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
