//! One pass over a source makes every rendition of its ladder: the work of
//! `ciphercast videos --from`, on the main thread of `ciphercast videos`,
//! once [`ladder`](super::ladder) has checked everything it can beforehand.
//!
//! Each frame is decoded once and handed, scaled, to one writer per height.
//! Scaling keeps the aspect ratio, rounds widths to even numbers (video
//! encoders work on 2×2 blocks of colour) and shrinks with `INTER_AREA`
//! (which averages the pixels it merges) but enlarges with `INTER_LINEAR`.
//! Two things real files teach:
//! - **Headers lie.** A container's frame count is an estimate (a file cut
//!   short still claims all its frames), so it only sizes the progress bar:
//!   frames are read until reading fails. A read that fails before the
//!   claimed end may be one damaged frame: [`Reader`] seeks past it and goes
//!   on, and gives up after [`MAX_FAILED_READS`] in a row. The output is
//!   whatever decoded.
//! - **A failure must not leave half a file under a name the server lists.**
//!   Each rendition is written under a hidden temporary name in the output
//!   directory (the library never lists hidden files) and renamed only when
//!   the whole source is done; on any failure, Ctrl-C included,
//!   [`Outputs`] removes the temporary files.
//!
//! Files are opened with OpenCV's FFmpeg backend only: asked to guess,
//! OpenCV also tries GStreamer, which prints errors of its own.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use opencv::core::{Mat, Size};
use opencv::imgproc::{self, INTER_AREA, INTER_LINEAR};
use opencv::prelude::*;
use opencv::videoio::{CAP_FFMPEG, CAP_PROP_POS_FRAMES, VideoCapture, VideoWriter};
use thiserror::Error;

use super::progress::Progress;

/// Reads that may fail in a row before the source counts as ended: about a
/// second of video, enough to step over a damaged stretch, few enough that
/// a file cut short, whose header claims frames that are not there, ends
/// after a moment of trying.
pub const MAX_FAILED_READS: u32 = 32;

/// Why one source's ladder was not made.
#[derive(Debug, Error)]
pub enum TranscodeError {
    /// The source cannot be opened, or no frame of it decodes.
    #[error("{file}: {why}")]
    Unreadable {
        /// The source as given.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// OpenCV cannot write MPEG-4 here.
    #[error("cannot write {0}: OpenCV has no MPEG-4 (mp4v) encoder here")]
    NoEncoder(String),
    /// Scaling or encoding a frame failed.
    #[error("{file}: OpenCV: {source}")]
    OpenCv {
        /// The source being transcoded.
        file: String,
        /// What OpenCV said.
        source: opencv::Error,
    },
    /// A finished file could not be put in place.
    #[error("cannot write {path}: {source}")]
    Rename {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Ctrl-C (or SIGTERM) during the work.
    #[error("interrupted: the unfinished files of {0} were removed")]
    Interrupted(String),
}

/// A source, as probed before any work.
pub(crate) struct Source {
    /// The file as given, for messages.
    pub(crate) shown: String,
    pub(crate) path: PathBuf,
    /// The size of its first frame.
    pub(crate) size: Size,
    /// Frames per second, as OpenCV reports them (23.976 stays 23.976).
    pub(crate) fps: f64,
    /// The container's frame count: an estimate, 0 when unknown.
    pub(crate) estimate: u32,
}

/// One output file of a source.
pub(crate) struct Rendition {
    pub(crate) height: u32,
    size: Size,
    /// Where it ends up.
    pub(crate) path: PathBuf,
    /// Where it is written until the whole source is done.
    temp: PathBuf,
}

impl Rendition {
    /// The rendition of `source` that is `height` high, to be written to `path`.
    pub(crate) fn new(source: &Source, height: u32, path: PathBuf) -> Rendition {
        Rendition { height, size: scaled_size(source.size, height), temp: temp_path(&path), path }
    }
}

/// Opens a file with the FFmpeg backend alone.
pub(crate) fn open(path: &Path) -> Result<VideoCapture, String> {
    let capture = VideoCapture::from_file(path, CAP_FFMPEG).map_err(|e| format!("cannot open it: {e}"))?;
    if !capture.is_opened().unwrap_or(false) {
        return Err("not a video FFmpeg can read".into());
    }
    Ok(capture)
}

/// The size of a rendition `height` high: the source's aspect ratio, the
/// width rounded to the nearest even number.
fn scaled_size(source: Size, height: u32) -> Size {
    let height = height as i32;
    let width = f64::from(source.width) * f64::from(height) / f64::from(source.height.max(1));
    let width = ((width / 2.0).round() as i32 * 2).max(2);
    Size::new(width, height)
}

/// Where a rendition is written until it is done: a hidden name in the
/// same directory (so the rename cannot cross file systems), ending in
/// `.mp4` (FFmpeg picks the container by extension), with the process id
/// (two runs at once do not share one).
fn temp_path(path: &Path) -> PathBuf {
    let file = path.file_name().unwrap_or(OsStr::new("ladder.mp4")).to_string_lossy();
    path.with_file_name(format!(".{file}.{}.part.mp4", std::process::id()))
}

/// One rendition's writer and the buffer its scaled frames are made in.
struct Writer {
    writer: VideoWriter,
    size: Size,
    scaled: Mat,
}

/// Makes every rendition of `source` in one pass and puts them in place.
/// `stop` (set by Ctrl-C) abandons the work at the next frame.
pub(crate) fn transcode(
    source: &Source,
    renditions: &[Rendition],
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<(), TranscodeError> {
    let started = Instant::now();
    // Declared before the writers, so dropped after them: an error below
    // closes every writer, then removes every temporary file.
    let outputs = Outputs::new(renditions.iter().map(|r| (r.temp.clone(), r.path.clone())).collect());
    let opencv = |error| TranscodeError::OpenCv { file: source.shown.clone(), source: error };
    let unreadable = |why| TranscodeError::Unreadable { file: source.shown.clone(), why };
    let mut capture = open(&source.path).map_err(unreadable)?;
    let fourcc = VideoWriter::fourcc('m', 'p', '4', 'v').map_err(opencv)?;
    let mut writers = Vec::new();
    for r in renditions {
        match VideoWriter::new_with_backend(&r.temp, CAP_FFMPEG, fourcc, source.fps, r.size, true) {
            Ok(writer) if writer.is_opened().unwrap_or(false) => {
                writers.push(Writer { writer, size: r.size, scaled: Mat::default() })
            }
            _ => return Err(TranscodeError::NoEncoder(r.path.display().to_string())),
        }
    }
    let mut bar = progress.file(&source.shown, source.estimate);
    let mut reader = Reader { next: 0, estimate: source.estimate, skipped: 0 };
    let mut frame = Mat::default();
    let mut frames = 0u32;
    while reader.read(&mut capture, &mut frame) {
        if stop.load(Ordering::SeqCst) {
            return Err(TranscodeError::Interrupted(source.shown.clone()));
        }
        for w in &mut writers {
            write_scaled(&frame, w).map_err(opencv)?;
        }
        frames += 1;
        bar.frame();
    }
    if frames == 0 {
        return Err(unreadable("no frame decodes".into()));
    }
    for w in &mut writers {
        w.writer.release().map_err(opencv)?;
    }
    drop(writers);
    outputs.commit()?;
    let mut line = format!("{}: {frames} frames", source.shown);
    if source.estimate != frames && source.estimate > 0 {
        line += &format!(" (its header said {})", source.estimate);
    }
    if reader.skipped > 0 {
        line += &format!(", {} unreadable frames skipped", reader.skipped);
    }
    let files: Vec<String> = renditions.iter().map(|r| r.path.display().to_string()).collect();
    line += &format!(" in {:.1} s: wrote {}", started.elapsed().as_secs_f64(), files.join(", "));
    bar.done(&line);
    Ok(())
}

/// Scales `frame` to the writer's size (if it is not that size already) and writes it.
fn write_scaled(frame: &Mat, w: &mut Writer) -> opencv::Result<()> {
    if frame.size()? == w.size {
        return w.writer.write(frame);
    }
    let interpolation = if w.size.height < frame.rows() { INTER_AREA } else { INTER_LINEAR };
    imgproc::resize(frame, &mut w.scaled, w.size, 0.0, 0.0, interpolation)?;
    w.writer.write(&w.scaled)
}

/// Reads a source to its real end, whatever its header claims.
struct Reader {
    /// The index of the frame the next read should return.
    next: u32,
    /// The header's frame count (0: unknown).
    estimate: u32,
    /// Frames that failed to read and were stepped over.
    skipped: u32,
}

impl Reader {
    /// Reads the next frame into `frame`; `false` at the end. A read that
    /// fails before the claimed end seeks to the frame after it and tries
    /// again, at most [`MAX_FAILED_READS`] times in a row.
    fn read(&mut self, capture: &mut VideoCapture, frame: &mut Mat) -> bool {
        let mut failed = 0;
        loop {
            let ok = matches!(capture.read(frame), Ok(true)) && !frame.empty();
            self.next = self.next.saturating_add(1);
            if ok {
                self.skipped += failed;
                return true;
            }
            failed += 1;
            if self.next >= self.estimate || failed >= MAX_FAILED_READS {
                return false;
            }
            // Where a capture stands after a failed read is unknown: say where to go on.
            let _ = capture.set(CAP_PROP_POS_FRAMES, f64::from(self.next));
        }
    }
}

/// The files of one source while they are written: each under its
/// temporary name until [`commit`](Outputs::commit) renames them all;
/// dropped uncommitted (an error, Ctrl-C), it removes them.
struct Outputs {
    /// `(temporary, final)` pairs.
    files: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

impl Outputs {
    fn new(files: Vec<(PathBuf, PathBuf)>) -> Outputs {
        Outputs { files, committed: false }
    }

    /// Renames every temporary file to its final name. Should one rename
    /// fail, the files already renamed are complete, and the rest removed.
    fn commit(mut self) -> Result<(), TranscodeError> {
        for (temp, path) in &self.files {
            fs::rename(temp, path)
                .map_err(|source| TranscodeError::Rename { path: path.display().to_string(), source })?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if !self.committed {
            for (temp, _) in &self.files {
                let _ = fs::remove_file(temp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renditions_keep_the_aspect_ratio_with_even_widths() {
        let source = Size::new(640, 360);
        assert_eq!(scaled_size(source, 240), Size::new(426, 240));
        assert_eq!(scaled_size(source, 720), Size::new(1280, 720));
        assert_eq!(scaled_size(source, 1440), Size::new(2560, 1440));
        assert_eq!(scaled_size(Size::new(640, 480), 24), Size::new(32, 24));
        assert_eq!(scaled_size(Size::new(1000, 1000), 8), Size::new(8, 8));
        assert_eq!(scaled_size(Size::new(10, 1000), 8), Size::new(2, 8));
    }

    #[test]
    fn temporary_names_are_hidden_mp4_files_beside_the_final_one() {
        let temp = temp_path(Path::new("videos/lecture_240p.mp4"));
        assert_eq!(temp.parent(), Some(Path::new("videos")));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".lecture_240p.mp4.") && name.ends_with(".mp4"), "{name}");
    }

    #[test]
    fn outputs_are_removed_unless_committed_and_renamed_when_they_are() {
        let dir = std::env::temp_dir().join(format!("ciphercast-outputs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pair = |n: &str| (dir.join(format!(".{n}.part.mp4")), dir.join(format!("{n}.mp4")));
        let (a, b) = (pair("a"), pair("b"));
        for (temp, _) in [&a, &b] {
            fs::write(temp, b"frames").unwrap();
        }
        drop(Outputs::new(vec![a.clone()]));
        assert!(!a.0.exists() && !a.1.exists(), "an abandoned output was left behind");
        Outputs::new(vec![b.clone()]).commit().unwrap();
        assert!(!b.0.exists() && fs::read(&b.1).unwrap() == b"frames", "a committed output was not renamed");
        fs::remove_dir_all(&dir).unwrap();
    }
}
