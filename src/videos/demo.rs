//! The demo library, drawn with OpenCV's VideoWriter: what `ciphercast
//! videos` makes without `--from`.
//!
//! Runs on the main thread of `ciphercast videos` (and of `ciphercast bench`,
//! for its own clips).
//!
//! Two videos, `Video_1` and `Video_2`, each at every requested height, named
//! `NAME_<height>p.mp4` as the library expects. Each frame has moving content
//! (different in the two videos) and a burned-in label with the video's
//! name, resolution and frame number, so a viewer can see the stream step
//! from one resolution to the next.

use std::fs;
use std::path::{Path, PathBuf};

use opencv::core::{Mat, Point, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio::VideoWriter;
use thiserror::Error;

/// Why the library could not be generated.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// The directory could not be created.
    #[error("cannot create {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// OpenCV could not open a writer for the file (no MPEG-4 encoder?).
    #[error("cannot write {0}: OpenCV has no MPEG-4 (mp4v) encoder here")]
    NoEncoder(PathBuf),
    /// Drawing or encoding failed.
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
    /// A parameter is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Output directory, created if missing.
    pub out: PathBuf,
    /// Length of each video.
    pub seconds: f64,
    /// Frames per second.
    pub fps: f64,
    /// Frame heights, one file per height per video.
    pub heights: Vec<u32>,
}

/// The names of the generated videos.
pub const VIDEO_NAMES: [&str; 2] = ["Video_1", "Video_2"];

/// Generates every file; returns the paths written.
pub fn generate(spec: &Spec) -> Result<Vec<PathBuf>, GenerateError> {
    if !(spec.fps > 0.0 && spec.fps <= 240.0) {
        return Err(GenerateError::Invalid(format!("--fps must be in (0, 240], got {}", spec.fps)));
    }
    if !(spec.seconds > 0.0 && spec.seconds <= 3600.0) {
        return Err(GenerateError::Invalid(format!("--seconds must be in (0, 3600], got {}", spec.seconds)));
    }
    if spec.heights.is_empty() || spec.heights.iter().any(|&h| !(8..=4320).contains(&h)) {
        return Err(GenerateError::Invalid("--heights must list heights from 8 to 4320".into()));
    }
    fs::create_dir_all(&spec.out).map_err(|source| GenerateError::Directory { path: spec.out.clone(), source })?;
    let frames = (spec.seconds * spec.fps).round().max(1.0) as u32;
    let mut written = Vec::new();
    for (index, name) in VIDEO_NAMES.iter().enumerate() {
        for &height in &spec.heights {
            let path = spec.out.join(format!("{name}_{height}p.mp4"));
            write_video(&path, index, name, height, spec.fps, frames)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Whether `dir` holds at least one file that looks like a video (hidden
/// files, which the library never lists, do not count).
pub fn has_videos(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && crate::shared::video::is_video_file(&name)
            })
        })
        .unwrap_or(false)
}

fn write_video(path: &Path, index: usize, name: &str, height: u32, fps: f64, frames: u32) -> Result<(), GenerateError> {
    let height = height as i32;
    // 16:9, rounded to an even width as most encoders require.
    let width = ((height * 16 / 9) + 1) & !1;
    let fourcc = VideoWriter::fourcc('m', 'p', '4', 'v')?;
    let mut writer = VideoWriter::new(path, fourcc, fps, Size::new(width, height), true)?;
    if !writer.is_opened()? {
        return Err(GenerateError::NoEncoder(path.to_path_buf()));
    }
    let label = format!("{height}p");
    let mut frame = Mat::new_rows_cols_with_default(height, width, opencv::core::CV_8UC3, Scalar::all(0.0))?;
    for n in 0..frames {
        let t = n as f64 / frames.max(2) as f64;
        if index == 0 {
            draw_bouncing_ball(&mut frame, width, height, t)?;
        } else {
            draw_sweeping_bars(&mut frame, width, height, t)?;
        }
        draw_label(&mut frame, height, &format!("{name} {label} frame {n}"))?;
        writer.write(&frame)?;
    }
    writer.release()?;
    Ok(())
}

/// Video_1: a yellow ball bouncing over a slowly changing blue background.
fn draw_bouncing_ball(frame: &mut Mat, width: i32, height: i32, t: f64) -> Result<(), GenerateError> {
    let shade = 90.0 + 80.0 * (t * std::f64::consts::TAU).sin().abs();
    frame.set_to(&Scalar::new(shade, 60.0, 20.0, 0.0), &opencv::core::no_array())?;
    let radius = (height / 6).max(2);
    let x = radius as f64 + (width - 2 * radius) as f64 * triangle(t * 3.0);
    let y = radius as f64 + (height - 2 * radius) as f64 * triangle(t * 5.0 + 0.25);
    let center = Point::new(x as i32, y as i32);
    imgproc::circle(frame, center, radius, Scalar::new(0.0, 220.0, 255.0, 0.0), -1, imgproc::LINE_AA, 0)?;
    Ok(())
}

/// Video_2: coloured bars sweeping left to right over a dark background.
fn draw_sweeping_bars(frame: &mut Mat, width: i32, height: i32, t: f64) -> Result<(), GenerateError> {
    frame.set_to(&Scalar::new(30.0, 30.0, 30.0, 0.0), &opencv::core::no_array())?;
    let bar = (width / 8).max(1);
    let colours = [(255.0, 0.0, 0.0), (0.0, 255.0, 0.0), (0.0, 0.0, 255.0), (255.0, 0.0, 255.0)];
    let offset = (t * 2.0 * width as f64) as i32;
    for (i, (b, g, r)) in colours.iter().enumerate() {
        let x = (offset + i as i32 * 2 * bar) % (width + bar) - bar;
        let rect = Rect::new(x, height / 6, bar, height * 2 / 3);
        imgproc::rectangle(frame, rect, Scalar::new(*b, *g, *r, 0.0), -1, imgproc::LINE_8, 0)?;
    }
    Ok(())
}

/// The burned-in label: white text on a black band at the bottom.
fn draw_label(frame: &mut Mat, height: i32, text: &str) -> Result<(), GenerateError> {
    let scale = (height as f64 / 400.0).max(0.2);
    let thickness = (height / 240).max(1);
    let band = (height as f64 * 0.12) as i32;
    let width = frame.cols();
    imgproc::rectangle(frame, Rect::new(0, height - band, width, band), Scalar::all(0.0), -1, imgproc::LINE_8, 0)?;
    let origin = Point::new(band / 3, height - band / 3);
    imgproc::put_text(
        frame,
        text,
        origin,
        imgproc::FONT_HERSHEY_SIMPLEX,
        scale,
        Scalar::all(255.0),
        thickness,
        imgproc::LINE_AA,
        false,
    )?;
    Ok(())
}

/// 0 → 1 → 0 as `x` goes 0 → 0.5 → 1, repeating.
fn triangle(x: f64) -> f64 {
    let f = x.rem_euclid(1.0);
    if f < 0.5 { f * 2.0 } else { 2.0 - f * 2.0 }
}
