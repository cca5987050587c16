//! The video library: the files of `--videos DIR`, grouped into videos.
//! Read by a handler thread when its client lists the videos or plays one,
//! and by the preparing thread at each scan.
//!
//! `NAME_<height>p.<ext>` is one resolution of video `NAME`; any other video
//! file is a video of its own. When both exist — `lecture.mp4` and the
//! ladder `ciphercast videos --from lecture.mp4` made of it — the ladder is
//! the video and the plain file is left out, rather than listed as one more
//! resolution of it. Hidden files (names starting with `.`) are never
//! listed: half-written renditions and the server's own store live under
//! such names. The directory is read each time a client asks, so files
//! dropped in appear without a restart (a plain file's height is probed
//! once per version of it, and an unreadable one reported once). A name
//! from the network is only ever compared with this listing: no path built
//! from client input is ever opened.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use log::{debug, warn};
use opencv::prelude::*;
use opencv::videoio::CAP_PROP_FRAME_HEIGHT;

use super::decoder;

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
                None => continue,
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

/// A file as it is on disk now: a replaced file is probed again.
type FileVersion = (PathBuf, u64, Option<SystemTime>);

/// The frame height of a file without one in its name, as FFmpeg reads it:
/// probed once per version of the file, and reported once if it is not a
/// readable video (the directory is read at every listing and every scan).
fn probe_height(path: &Path) -> Option<u32> {
    static PROBED: OnceLock<Mutex<HashMap<FileVersion, Option<u32>>>> = OnceLock::new();
    let metadata = fs::metadata(path).ok()?;
    let key = (path.to_path_buf(), metadata.len(), metadata.modified().ok());
    let probed = PROBED.get_or_init(Mutex::default);
    if let Some(height) = probed.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
        return *height;
    }
    let height = decoder::open(path)
        .ok()
        .and_then(|capture| capture.get(CAP_PROP_FRAME_HEIGHT).ok())
        .filter(|&h| h >= 1.0)
        .map(|h| h as u32);
    if height.is_none() {
        warn!("{}: not a readable video, skipped", path.display());
    }
    let mut probed = probed.lock().unwrap_or_else(PoisonError::into_inner);
    probed.retain(|(known, _, _), _| known != path);
    probed.insert(key, height);
    height
}
