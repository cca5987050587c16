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
//! Error messages name the file, never its directory: they go to clients,
//! and a client has no business knowing the server's paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use opencv::core::{Mat, Vector};
use opencv::imgcodecs::{IMWRITE_JPEG_QUALITY, imencode};
use opencv::prelude::*;
use opencv::videoio::{CAP_ANY, CAP_PROP_FPS, CAP_PROP_FRAME_COUNT, CAP_PROP_POS_FRAMES, VideoCapture};

/// What a file holds, as far as the plan is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FileInfo {
    /// Frame count as the container reports it.
    pub(crate) frames: u32,
    /// Frames per second.
    pub(crate) fps: f64,
}

/// A file as it is on disk now: a replaced file is a different file.
type FileKey = (PathBuf, Option<SystemTime>);

/// The decoders and file facts every streaming thread shares.
#[derive(Default)]
pub(crate) struct Decoders {
    /// One decoder per file, while any stream holds it.
    open: Mutex<HashMap<FileKey, Weak<Mutex<Decoder>>>>,
    /// Frame count and rate of every file probed so far.
    infos: Mutex<HashMap<FileKey, FileInfo>>,
}

impl Decoders {
    /// The decoder of a file, shared by every stream that plays it.
    pub(crate) fn decoder(&self, file: &Arc<Path>, modified: Option<SystemTime>) -> Arc<Mutex<Decoder>> {
        let mut open = lock(&self.open);
        let key = (file.to_path_buf(), modified);
        if let Some(decoder) = open.get(&key).and_then(Weak::upgrade) {
            return decoder;
        }
        open.retain(|_, weak| weak.strong_count() > 0);
        let decoder = Arc::new(Mutex::new(Decoder { path: Arc::clone(file), capture: None, position: 0 }));
        open.insert(key, Arc::downgrade(&decoder));
        decoder
    }

    /// The file's frame count and rate, probed once (the probe runs without the lock).
    pub(crate) fn info(&self, file: &Path, modified: Option<SystemTime>) -> Result<FileInfo, String> {
        let key = (file.to_path_buf(), modified);
        if let Some(info) = lock(&self.infos).get(&key) {
            return Ok(*info);
        }
        let info = probe(file)?;
        lock(&self.infos).insert(key, info);
        Ok(info)
    }
}

/// A file's OpenCV capture, opened when a frame is first needed.
pub(crate) struct Decoder {
    path: Arc<Path>,
    capture: Option<VideoCapture>,
    /// The index of the frame the capture will read next.
    position: u32,
}

impl Decoder {
    /// Opens the file if needed and positions it at frame `index`.
    pub(crate) fn seek(&mut self, index: u32) -> Result<&mut VideoCapture, String> {
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
    pub(crate) fn decode_to_jpeg(&mut self, index: u32, encoder: &mut Encoder) -> Result<Vec<u8>, String> {
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

/// A file's name without its directory.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Takes a lock; the maps stay consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
