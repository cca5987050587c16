//! The video library: the files of `--videos DIR`, grouped into videos.
//! Read by a handler thread when its client lists the videos or plays one.
//!
//! `NAME_<height>p.<ext>` is one resolution of video `NAME`; any other video
//! file is a video of its own. When both exist — `lecture.mp4` and the
//! ladder `ciphercast videos --from lecture.mp4` made of it — the ladder is
//! the video and the plain file is left out, rather than listed as one more
//! resolution of it. Hidden files (names starting with `.`) are never
//! listed: half-written renditions and the server's own store live under
//! such names. The directory is read each time a client asks, so files
//! dropped in appear without a restart. A name from the network is only
//! ever compared with this listing: no path built from client input is
//! ever opened.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use log::{debug, warn};
use opencv::prelude::*;
use opencv::videoio::{CAP_FFMPEG, CAP_PROP_FRAME_HEIGHT, VideoCapture};

use crate::shared::message::VideoInfo;
use crate::shared::video::parse_file_name;

/// One resolution of a video: a file.
#[derive(Debug, Clone)]
pub(crate) struct Resolution {
    /// Label shown to users, e.g. `720p`.
    pub(crate) label: String,
    /// Frame height, used to sort resolutions.
    pub(crate) height: u32,
    /// The file.
    pub(crate) path: PathBuf,
}

/// A video: its name and its resolutions, lowest first.
#[derive(Debug, Clone)]
pub(crate) struct Video {
    pub(crate) name: String,
    pub(crate) resolutions: Vec<Resolution>,
}

impl Video {
    /// How the video is listed to clients.
    pub(crate) fn info(&self) -> VideoInfo {
        let resolutions = self.resolutions.iter().map(|r| r.label.clone()).collect();
        VideoInfo { name: self.name.clone(), resolutions, prepared: None }
    }
}

/// Reads `dir` and groups its video files; sorted by name.
pub(crate) fn scan(dir: &Path) -> io::Result<Vec<Video>> {
    let mut files: Vec<(String, PathBuf)> = fs::read_dir(dir)?
        .flatten()
        .filter(|entry| entry.file_type().map(|t| t.is_file() || t.is_symlink()).unwrap_or(false))
        .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.path())))
        .filter(|(file_name, _)| !file_name.starts_with('.'))
        .collect();
    files.sort();
    // The names that have a ladder: their plain files are left out.
    let laddered: HashSet<String> = files
        .iter()
        .filter_map(|(file_name, _)| match parse_file_name(file_name) {
            Some((name, Some(_))) => Some(name.to_string()),
            _ => None,
        })
        .collect();
    let mut videos: Vec<Video> = Vec::new();
    for (file_name, path) in &files {
        let Some((name, height)) = parse_file_name(file_name) else {
            continue;
        };
        let path = path.clone();
        let height = match height {
            Some(height) => height,
            None if laddered.contains(name) => {
                debug!(
                    "{}: {name} has a ladder (NAME_<height>p files), so this plain file is not listed",
                    path.display()
                );
                continue;
            }
            // No height in the name: ask the file.
            None => match probe_height(&path) {
                Some(height) => height,
                None => {
                    warn!("{}: not a readable video, skipped", path.display());
                    continue;
                }
            },
        };
        let resolution = Resolution { label: format!("{height}p"), height, path };
        match videos.iter_mut().find(|v| v.name == name) {
            Some(video) if video.resolutions.iter().any(|r| r.height == height) => {
                warn!("{}: a second {height}p file for {name}, skipped", resolution.path.display());
            }
            Some(video) => video.resolutions.push(resolution),
            None => videos.push(Video { name: name.to_string(), resolutions: vec![resolution] }),
        }
    }
    for video in &mut videos {
        video.resolutions.sort_by_key(|r| r.height);
    }
    videos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(videos)
}

/// Finds a video by exact name.
pub(crate) fn find(dir: &Path, name: &str) -> io::Result<Option<Video>> {
    Ok(scan(dir)?.into_iter().find(|v| v.name == name))
}

/// The frame height OpenCV's FFmpeg backend reads (asked to guess,
/// OpenCV also tries GStreamer, which prints errors of its own).
fn probe_height(path: &Path) -> Option<u32> {
    let capture = VideoCapture::from_file(path, CAP_FFMPEG).ok()?;
    if !capture.is_opened().unwrap_or(false) {
        return None;
    }
    let height = capture.get(CAP_PROP_FRAME_HEIGHT).ok()?;
    (height >= 1.0).then_some(height as u32)
}
