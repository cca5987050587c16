//! Video on the wire and in the library: file naming, the resolution plan,
//! and the header of a binary video frame.
//!
//! A binary frame (kind 1) carries one JPEG picture behind this header, all
//! integers big-endian:
//!
//! ```text
//! stream u32 | sequence u32 | presentation time µs u64 | label length u8 | label (e.g. "720p") | JPEG…
//! ```

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// File extensions the library treats as videos.
pub const VIDEO_EXTENSIONS: [&str; 7] = ["mp4", "m4v", "avi", "mkv", "mov", "webm", "mpg"];

/// Whether a file name has a video extension.
pub fn is_video_file(file_name: &str) -> bool {
    file_name
        .rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && VIDEO_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// Splits a video file name into the video's name and, for `NAME_<height>p.<ext>`,
/// the height. `None` for files that are not videos.
pub fn parse_file_name(file_name: &str) -> Option<(&str, Option<u32>)> {
    if !is_video_file(file_name) {
        return None;
    }
    let (stem, _) = file_name.rsplit_once('.')?;
    if let Some((name, suffix)) = stem.rsplit_once('_')
        && let Some(digits) = suffix.strip_suffix('p')
        && !name.is_empty()
        && !digits.is_empty()
        && digits.len() <= 5
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(height) = digits.parse::<u32>()
        && height > 0
    {
        return Some((name, Some(height)));
    }
    Some((stem, None))
}

/// One part of the plan: frames `first..=last` come from `resolution`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPart {
    /// The resolution's label, e.g. `720p`.
    pub resolution: String,
    /// First frame index of the part.
    pub first: u32,
    /// Last frame index of the part (inclusive).
    pub last: u32,
}

/// The frame ranges of `k` resolutions over `n` frames: part `i` covers
/// frames ⌊i·n/k⌋ … ⌊(i+1)·n/k⌋ − 1. Empty parts (more resolutions than
/// frames) are left out.
pub fn plan_ranges(n: u32, k: usize) -> Vec<(usize, u32, u32)> {
    let (n64, k64) = (u64::from(n), k as u64);
    (0..k)
        .filter_map(|i| {
            let first = (i as u64 * n64 / k64) as u32;
            let end = ((i as u64 + 1) * n64 / k64) as u32;
            (end > first).then(|| (i, first, end - 1))
        })
        .collect()
}

/// How fast the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// At the video's frame rate.
    Native,
    /// As fast as the client reads (for benchmarks).
    None,
}

/// Which resolution each frame of a stream comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// The assignment's: the frames in equal parts, lowest resolution first.
    #[default]
    Thirds,
    /// Each second's resolution follows what the viewer's link carries.
    Adaptive,
}

/// Whether a stream is sending, as a `stream_state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayState {
    /// Frames flow, each at its time.
    Playing,
    /// No frame is sent until a resume (or a stop).
    Paused,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Every frame was sent.
    Finished,
    /// The client asked to stop (or left).
    Stopped,
    /// The video could not be found, opened or read.
    Error,
}

/// The header of a binary video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// Which stream of the connection.
    pub stream: u32,
    /// Frame index in the video, from 0.
    pub sequence: u32,
    /// When to show the frame, in microseconds from the stream's first frame.
    pub pts_micros: u64,
    /// Resolution label, e.g. `1440p` (at most 255 bytes).
    pub resolution: String,
}

/// Appends the header of a frame with these fields to `out`: what
/// [`FrameHeader::encode_into`] writes, from borrowed parts (the server's
/// streaming threads build one per frame without allocating). A label over
/// 255 bytes is cut to 255.
pub fn encode_header(out: &mut impl Extend<u8>, stream: u32, sequence: u32, pts_micros: u64, resolution: &str) {
    let label = &resolution.as_bytes()[..resolution.len().min(255)];
    out.extend(stream.to_be_bytes());
    out.extend(sequence.to_be_bytes());
    out.extend(pts_micros.to_be_bytes());
    out.extend([label.len() as u8]);
    out.extend(label.iter().copied());
}

/// A binary frame whose header does not parse.
#[derive(Debug, Error)]
#[error("malformed video frame header")]
pub struct BadFrameHeader;

/// Bytes of a video header before its label: stream, sequence, time, label length.
pub const VIDEO_HEADER_FIXED: usize = 17;

impl FrameHeader {
    /// Appends the encoded header to `out`.
    pub fn encode_into(&self, out: &mut impl Extend<u8>) {
        encode_header(out, self.stream, self.sequence, self.pts_micros, &self.resolution);
    }

    /// Parses a header from the front of a binary frame's payload; returns it
    /// and the JPEG bytes after it.
    pub fn decode(payload: &[u8]) -> Result<(FrameHeader, &[u8]), BadFrameHeader> {
        let fixed = payload.get(..17).ok_or(BadFrameHeader)?;
        let stream = u32::from_be_bytes(fixed[0..4].try_into().map_err(|_| BadFrameHeader)?);
        let sequence = u32::from_be_bytes(fixed[4..8].try_into().map_err(|_| BadFrameHeader)?);
        let pts_micros = u64::from_be_bytes(fixed[8..16].try_into().map_err(|_| BadFrameHeader)?);
        let label_len = fixed[16] as usize;
        let label = payload.get(17..17 + label_len).ok_or(BadFrameHeader)?;
        let resolution = String::from_utf8_lossy(label).into_owned();
        Ok((FrameHeader { stream, sequence, pts_micros, resolution }, &payload[17 + label_len..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_interface() {
        assert_eq!(parse_file_name("Video_1_720p.mp4"), Some(("Video_1", Some(720))));
        assert_eq!(parse_file_name("Video_1_1440p.MKV"), Some(("Video_1", Some(1440))));
        assert_eq!(parse_file_name("lecture.mp4"), Some(("lecture", None)));
        assert_eq!(parse_file_name("clip_p.mp4"), Some(("clip_p", None)));
        assert_eq!(parse_file_name("_720p.mp4"), Some(("_720p", None)));
        assert_eq!(parse_file_name("README.md"), None);
        assert_eq!(parse_file_name(".mp4"), None);
    }

    #[test]
    fn plan_splits_frames_proportionally_and_contiguously() {
        assert_eq!(plan_ranges(300, 3), vec![(0, 0, 99), (1, 100, 199), (2, 200, 299)]);
        assert_eq!(plan_ranges(10, 3), vec![(0, 0, 2), (1, 3, 5), (2, 6, 9)]);
        assert_eq!(plan_ranges(7, 1), vec![(0, 0, 6)]);
        assert_eq!(plan_ranges(2, 3), vec![(1, 0, 0), (2, 1, 1)]);
        assert!(plan_ranges(0, 3).is_empty());
    }

    #[test]
    fn frame_header_round_trips() {
        let header = FrameHeader { stream: 7, sequence: 299, pts_micros: 9_966_666, resolution: "1440p".into() };
        let mut bytes = Vec::new();
        header.encode_into(&mut bytes);
        assert_eq!(&bytes[..8], &[0, 0, 0, 7, 0, 0, 1, 43]);
        bytes.extend_from_slice(b"JPEG");
        let (decoded, rest) = FrameHeader::decode(&bytes).unwrap();
        assert_eq!((decoded, rest), (header, &b"JPEG"[..]));
        assert!(FrameHeader::decode(&bytes[..10]).is_err());
        assert!(FrameHeader::decode(&[0; 16].iter().copied().chain([9, b'x']).collect::<Vec<_>>()).is_err());
    }
}
