//! What a streaming thread queues for its viewer's writer: the stream's
//! control messages, and pictures whose frame and video headers are built
//! in place, so that a prepared frame reaches the writer without a single
//! allocation (`docs/BENCHMARKS.md`, "The prepared library").

use std::sync::Arc;
use std::time::Duration;

use super::store::Slice;
use crate::shared::frame::{FrameKind, HEADER_LEN};
use crate::shared::limits::MAX_FRAME_LEN;
use crate::shared::video::{VIDEO_HEADER_FIXED, encode_header};

/// Something queued for a viewer's writer by its streaming thread.
pub(crate) enum VideoItem {
    /// A complete control frame (stream start or end), kept in order with the pictures.
    Control(Arc<[u8]>),
    /// A picture: the frame and video headers, then the JPEG, written together.
    Frame {
        /// Its frame number (the video header's sequence number).
        sequence: u32,
        /// Frame header and video header.
        head: FrameHead,
        /// The JPEG bytes, shared with other viewers.
        jpeg: Slice,
    },
}

impl VideoItem {
    pub(crate) fn is_frame(&self) -> bool {
        matches!(self, VideoItem::Frame { .. })
    }

    /// Bytes it takes on the wire.
    pub(crate) fn wire_len(&self) -> usize {
        match self {
            VideoItem::Control(bytes) => bytes.len(),
            VideoItem::Frame { head, jpeg, .. } => head.len() + jpeg.len(),
        }
    }
}

/// The longest resolution label a frame carries here (the library's are
/// `<height>p`, at most 11 bytes).
const MAX_LABEL: usize = 32;

/// A picture's frame and video headers, built in place: a prepared frame
/// reaches the writer without a single allocation.
pub(crate) struct FrameHead {
    bytes: [u8; HEADER_LEN + VIDEO_HEADER_FIXED + MAX_LABEL],
    len: usize,
}

impl FrameHead {
    pub(crate) fn new() -> FrameHead {
        FrameHead { bytes: [0; HEADER_LEN + VIDEO_HEADER_FIXED + MAX_LABEL], len: 0 }
    }
}

impl Extend<u8> for FrameHead {
    /// Appends bytes; what would not fit is dropped (`frame_item` never
    /// writes a label longer than [`MAX_LABEL`]).
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        for byte in bytes {
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = byte;
                self.len += 1;
            }
        }
    }
}

impl std::ops::Deref for FrameHead {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Builds the queued picture: the frame header (length, kind 1), the video
/// header, then the JPEG. `None` if it would exceed the frame size limit.
pub(crate) fn frame_item(stream: u32, sequence: u32, pts: Duration, label: &str, jpeg: Slice) -> Option<VideoItem> {
    if label.len() > MAX_LABEL {
        return None;
    }
    let mut head = FrameHead::new();
    head.extend([0; 4]);
    head.extend([FrameKind::Video as u8]);
    encode_header(&mut head, stream, sequence, pts.as_micros() as u64, label);
    let length = u32::try_from(head.len - 4 + jpeg.len()).ok().filter(|&l| l <= MAX_FRAME_LEN)?;
    head.bytes[..4].copy_from_slice(&length.to_be_bytes());
    Some(VideoItem::Frame { sequence, head, jpeg })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::video::FrameHeader;

    #[test]
    fn a_frame_head_is_the_protocol_s_frame_header_then_video_header() {
        let jpeg = Slice::from(Arc::<[u8]>::from(&b"JPEG"[..]));
        let item = frame_item(7, 299, Duration::from_micros(9_966_666), "1440p", jpeg);
        let Some(VideoItem::Frame { head, jpeg, .. }) = item else { panic!("no frame") };
        let mut video_header = Vec::new();
        FrameHeader { stream: 7, sequence: 299, pts_micros: 9_966_666, resolution: "1440p".into() }
            .encode_into(&mut video_header);
        let length = (1 + video_header.len() + jpeg.len()) as u32;
        assert_eq!(&head[..4], &length.to_be_bytes());
        assert_eq!(head[4], FrameKind::Video as u8);
        assert_eq!(&head[5..], &video_header[..]);
        let long = "p".repeat(MAX_LABEL + 1);
        assert!(frame_item(1, 0, Duration::ZERO, &long, Slice::from(Arc::<[u8]>::from(&[][..]))).is_none());
    }
}
