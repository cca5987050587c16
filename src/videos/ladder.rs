//! `ciphercast videos --from FILE…`: the resolution ladder of a file you
//! bring, made with OpenCV on the main thread of `ciphercast videos`.
//!
//! The lesson is the one streaming services (HLS, DASH) are built on:
//! encode once, when the video is added, so that serving only sends. An
//! instructor has `lecture.mp4`, one rendition; the assignment's plan needs
//! three. This makes `lecture_240p.mp4`, `lecture_720p.mp4` and
//! `lecture_1440p.mp4` (one file per `--heights` entry, named after the
//! input's file stem), at the source's frame rate, in one pass over the
//! source ([`transcode`](super::transcode)). A height above the source's is
//! made all the same (by enlarging, which adds no detail) and said to be
//! upscaled. Audio is not carried: OpenCV reads and writes pictures only.
//!
//! What this file does is everything that can go wrong *before* the work:
//! the heights, every input (opened and one frame decoded) and every output
//! name are checked first, so a typo in the last of ten files costs nothing
//! and leaves nothing behind.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{CAP_PROP_FPS, CAP_PROP_FRAME_COUNT};
use thiserror::Error;

use super::progress::Progress;
use super::transcode::{self, Rendition, Source, TranscodeError};

/// Smallest and largest height `--heights` may ask for.
pub const HEIGHTS: std::ops::RangeInclusive<u32> = 8..=4320;

/// The frame rate used when OpenCV cannot tell a file's own.
const FALLBACK_FPS: f64 = 30.0;

/// What to make.
#[derive(Debug, Clone)]
pub struct Request {
    /// The source files; each makes the video named after its file stem.
    pub inputs: Vec<PathBuf>,
    /// The heights of the ladder.
    pub heights: Vec<u32>,
    /// The directory to write to, created if missing.
    pub out: PathBuf,
    /// Replace outputs that already exist.
    pub force: bool,
}

/// Why a ladder was not made.
#[derive(Debug, Error)]
pub enum LadderError {
    /// The command line asks for something that cannot be made.
    #[error("{0}")]
    Usage(String),
    /// An input is missing, unreadable, or not a video.
    #[error("{file}: {why}")]
    BadInput {
        /// The input as given.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// An output exists and `--force` was not given.
    #[error("{0} exists (--force replaces it; `make videos`: FORCE=1)")]
    Exists(String),
    /// The output directory cannot be created.
    #[error("cannot create {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The work on one input failed (its unfinished files are removed).
    #[error(transparent)]
    Transcode(#[from] TranscodeError),
}

impl LadderError {
    /// Whether the user asked for something wrong (exit status 2) rather
    /// than the work failing (exit status 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            LadderError::Usage(_)
                | LadderError::BadInput { .. }
                | LadderError::Exists(_)
                | LadderError::Transcode(TranscodeError::Unreadable { .. })
        )
    }
}

/// Makes the ladder of every input; returns the files written.
///
/// Prints progress on stdout. `stop` is set by the Ctrl-C handler: the file
/// being made is abandoned at the next frame and its temporary files removed.
pub fn make(request: &Request, stop: &AtomicBool) -> Result<Vec<PathBuf>, LadderError> {
    let heights = check_heights(&request.heights)?;
    let mut named = Vec::new();
    let mut planned = HashSet::new();
    for input in &request.inputs {
        let name = video_name(input)?;
        let paths: Vec<PathBuf> = heights.iter().map(|h| request.out.join(format!("{name}_{h}p.mp4"))).collect();
        for path in &paths {
            check_output(path, request, &mut planned)?;
        }
        named.push((input, paths));
    }
    let progress = Progress::on_stdout();
    let mut jobs = Vec::new();
    for (input, paths) in named {
        let (source, notes) = probe(input)?;
        let renditions: Vec<Rendition> =
            heights.iter().zip(paths).map(|(&height, path)| Rendition::new(&source, height, path)).collect();
        jobs.push((source, notes, renditions));
    }
    fs::create_dir_all(&request.out)
        .map_err(|source| LadderError::Directory { path: request.out.display().to_string(), source })?;
    let mut written = Vec::new();
    for (source, notes, renditions) in jobs {
        if stop.load(Ordering::SeqCst) {
            return Err(TranscodeError::Interrupted(source.shown).into());
        }
        for note in notes.iter().chain(upscaled(&source, &renditions).iter()) {
            progress.note(note);
        }
        transcode::transcode(&source, &renditions, &progress, stop)?;
        written.extend(renditions.into_iter().map(|r| r.path));
    }
    Ok(written)
}

/// The heights, each even and in [`HEIGHTS`]; sorted, each once.
fn check_heights(heights: &[u32]) -> Result<Vec<u32>, LadderError> {
    if heights.is_empty() {
        return Err(LadderError::Usage("--heights: list at least one height".into()));
    }
    if let Some(bad) = heights.iter().find(|h| !HEIGHTS.contains(h) || *h % 2 != 0) {
        return Err(LadderError::Usage(format!(
            "--heights: {bad} is not an even height from {} to {} (video encoders need even sizes)",
            HEIGHTS.start(),
            HEIGHTS.end()
        )));
    }
    let mut heights = heights.to_vec();
    heights.sort_unstable();
    heights.dedup();
    Ok(heights)
}

/// The video's name: the input's file stem.
fn video_name(input: &Path) -> Result<String, LadderError> {
    let shown = input.display().to_string();
    let bad = |why: &str| LadderError::BadInput { file: shown.clone(), why: why.to_string() };
    let name = input.file_stem().ok_or_else(|| bad("not a file name"))?;
    let name = name.to_str().ok_or_else(|| bad("the file name is not UTF-8, which video names must be"))?;
    if name.starts_with('.') {
        return Err(bad("a hidden file: the library never lists videos whose names start with '.'"));
    }
    Ok(name.to_string())
}

/// Refuses an output that would be made twice, that is a directory, that
/// exists without `--force`, or that is one of the inputs.
fn check_output(path: &Path, request: &Request, planned: &mut HashSet<PathBuf>) -> Result<(), LadderError> {
    let shown = path.display().to_string();
    if !planned.insert(path.to_path_buf()) {
        return Err(LadderError::Usage(format!("{shown} would be made twice: two inputs have the same name")));
    }
    let Ok(metadata) = fs::metadata(path) else {
        return Ok(());
    };
    if metadata.is_dir() {
        return Err(LadderError::Usage(format!("{shown} exists and is a directory")));
    }
    if !request.force {
        return Err(LadderError::Exists(shown));
    }
    let same = |input: &PathBuf| fs::canonicalize(input).ok() == fs::canonicalize(path).ok();
    if request.inputs.iter().any(same) {
        return Err(LadderError::Usage(format!("{shown} is also an input: it cannot be replaced while it is read")));
    }
    Ok(())
}

/// Opens an input and decodes its first frame: what it is, before any
/// work. Also returns what to say about it (a frame rate OpenCV cannot tell).
fn probe(input: &Path) -> Result<(Source, Vec<String>), LadderError> {
    let shown = input.display().to_string();
    let bad = |why: String| LadderError::BadInput { file: shown.clone(), why };
    match fs::metadata(input) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Err(bad("not a file".into())),
        Err(e) => return Err(bad(format!("cannot read it: {e}"))),
    }
    let mut capture = transcode::open(input).map_err(bad)?;
    let mut frame = Mat::default();
    if !matches!(capture.read(&mut frame), Ok(true)) || frame.empty() {
        return Err(bad("not a video: FFmpeg opens it, but no frame decodes".into()));
    }
    let size = frame.size().map_err(|e| bad(format!("OpenCV: {e}")))?;
    let fps = capture.get(CAP_PROP_FPS).ok().filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0);
    let mut notes = Vec::new();
    if fps.is_none() {
        notes.push(format!("{shown}: OpenCV cannot tell its frame rate; written at {FALLBACK_FPS} fps"));
    }
    let count = capture.get(CAP_PROP_FRAME_COUNT).unwrap_or(0.0);
    let estimate = if count.is_finite() && count >= 1.0 { count.min(f64::from(u32::MAX)) as u32 } else { 0 };
    let source = Source { shown, path: input.to_path_buf(), size, fps: fps.unwrap_or(FALLBACK_FPS), estimate };
    Ok((source, notes))
}

/// The line that says which heights are upscaled, if any are.
fn upscaled(source: &Source, renditions: &[Rendition]) -> Option<String> {
    let source_height = u32::try_from(source.size.height).unwrap_or(0);
    let upscaled: Vec<String> =
        renditions.iter().filter(|r| r.height > source_height).map(|r| format!("{}p", r.height)).collect();
    let verb = if upscaled.len() == 1 { "is" } else { "are" };
    (!upscaled.is_empty()).then(|| {
        format!(
            "{}: the source is {source_height}p; {} {verb} upscaled from it (no detail is added)",
            source.shown,
            upscaled.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_must_be_even_and_in_range_and_are_sorted_once_each() {
        assert_eq!(check_heights(&[1440, 240, 720, 240]).unwrap(), vec![240, 720, 1440]);
        for bad in [&[][..], &[241], &[6], &[4322], &[240, 0]] {
            assert!(matches!(check_heights(bad), Err(LadderError::Usage(_))), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_video_is_named_after_the_file_stem_and_may_not_be_hidden() {
        assert_eq!(video_name(Path::new("talks/lecture.2024.mp4")).unwrap(), "lecture.2024");
        assert!(matches!(video_name(Path::new("talks/.lecture.mp4")), Err(LadderError::BadInput { .. })));
    }
}
