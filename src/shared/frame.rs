//! Layer 1 of the protocol: bytes ↔ frames.
//!
//! ```text
//! +----------------+--------+-------------------------+
//! | length: u32 BE | kind u8| payload (length-1 bytes) |
//! +----------------+--------+-------------------------+
//! ```
//! `length` counts the kind byte and the payload. Kind `0` carries a JSON
//! control message, kind `1` a binary video frame.
//!
//! The codec knows nothing of sockets: it reads from any [`Read`] and writes to
//! any [`Write`], so the unit tests below run on byte vectors. The length is
//! checked against the caller's limit *before* a buffer is allocated, so a
//! header announcing 4 GiB costs nothing.

use std::io::{self, Read, Write};

use thiserror::Error;

use super::limits::MAX_FRAME_LEN;

/// Bytes in a frame header: the length and the kind.
pub const HEADER_LEN: usize = 5;

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A JSON control message (see [`crate::shared::message`]).
    Control = 0,
    /// A binary video frame.
    Video = 1,
}

impl TryFrom<u8> for FrameKind {
    type Error = FrameError;

    fn try_from(byte: u8) -> Result<Self, FrameError> {
        match byte {
            0 => Ok(FrameKind::Control),
            1 => Ok(FrameKind::Video),
            other => Err(FrameError::UnknownKind(other)),
        }
    }
}

/// One unit on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload holds.
    pub kind: FrameKind,
    /// The payload, without header.
    pub payload: Vec<u8>,
}

/// Why a frame could not be read or written. After any of these the byte
/// stream can no longer be trusted, so the connection is closed.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly, between two frames.
    #[error("connection closed")]
    Closed,
    /// The header announced more than the limit allows; nothing was allocated.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLong {
        /// Announced length.
        size: u32,
        /// Limit in force.
        max: u32,
    },
    /// A length of zero leaves no room for the kind byte.
    #[error("empty frame (length 0)")]
    Empty,
    /// The kind byte is not one this protocol defines.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The socket failed, timed out, or closed in the middle of a frame.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Reads one frame, refusing any whose announced length exceeds `max_len`.
///
/// Blocks until a whole frame has arrived (or the reader's timeout fires).
pub fn read_frame(reader: &mut impl Read, max_len: u32) -> Result<Frame, FrameError> {
    let mut frame = Frame { kind: FrameKind::Control, payload: Vec::new() };
    read_frame_into(reader, max_len, &mut frame)?;
    Ok(frame)
}

/// Like [`read_frame`], into `frame`, reusing its payload's allocation: a
/// connection that reads many frames allocates once, not once per frame.
pub fn read_frame_into(reader: &mut impl Read, max_len: u32, frame: &mut Frame) -> Result<(), FrameError> {
    let mut length = [0u8; 4];
    // A clean end of stream is only clean on a frame boundary.
    let first = loop {
        match reader.read(&mut length) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    };
    reader.read_exact(&mut length[first..])?;
    let len = u32::from_be_bytes(length);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let max = max_len.min(MAX_FRAME_LEN);
    if len > max {
        return Err(FrameError::TooLong { size: len, max });
    }
    let mut kind = [0u8; 1];
    reader.read_exact(&mut kind)?;
    frame.kind = FrameKind::try_from(kind[0])?;
    let payload = &mut frame.payload;
    if payload.capacity() > KEPT_CAPACITY && len as usize - 1 <= KEPT_CAPACITY {
        // Do not hold on to the memory of one exceptionally large frame.
        *payload = Vec::new();
    }
    payload.clear();
    payload.resize(len as usize - 1, 0);
    reader.read_exact(payload)?;
    Ok(())
}

/// Payload capacity a reader keeps between frames (see [`read_frame_into`]).
pub const KEPT_CAPACITY: usize = 64 * 1024;

/// Encodes a frame (header and payload) into one contiguous buffer, so that it
/// can be written with a single call and shared among many recipients.
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = frame_len(payload.len())?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.push(kind as u8);
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

/// Writes one frame. The caller flushes.
pub fn write_frame(writer: &mut impl Write, kind: FrameKind, payload: &[u8]) -> Result<(), FrameError> {
    let len = frame_len(payload.len())?;
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&len.to_be_bytes());
    header[4] = kind as u8;
    writer.write_all(&header)?;
    writer.write_all(payload)?;
    Ok(())
}

/// The header's length field for a payload of `payload_len` bytes.
fn frame_len(payload_len: usize) -> Result<u32, FrameError> {
    match u32::try_from(payload_len + 1) {
        Ok(len) if len <= MAX_FRAME_LEN => Ok(len),
        _ => Err(FrameError::TooLong { size: u32::try_from(payload_len + 1).unwrap_or(u32::MAX), max: MAX_FRAME_LEN }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn encodes_exact_bytes() {
        let bytes = encode_frame(FrameKind::Control, b"{}").unwrap();
        assert_eq!(bytes, [0, 0, 0, 3, 0, b'{', b'}']);
        let mut written = Vec::new();
        write_frame(&mut written, FrameKind::Video, &[7, 8]).unwrap();
        assert_eq!(written, [0, 0, 0, 3, 1, 7, 8]);
    }

    #[test]
    fn round_trips_back_to_back_frames() {
        let mut bytes = encode_frame(FrameKind::Control, b"hello").unwrap();
        bytes.extend(encode_frame(FrameKind::Video, &[0xff; 300]).unwrap());
        let mut cursor = Cursor::new(bytes);
        let first = read_frame(&mut cursor, MAX_FRAME_LEN).unwrap();
        assert_eq!((first.kind, first.payload.as_slice()), (FrameKind::Control, &b"hello"[..]));
        let second = read_frame(&mut cursor, MAX_FRAME_LEN).unwrap();
        assert_eq!((second.kind, second.payload.len()), (FrameKind::Video, 300));
        assert!(matches!(read_frame(&mut cursor, MAX_FRAME_LEN), Err(FrameError::Closed)));
    }

    #[test]
    fn refuses_huge_length_before_allocating() {
        // Only the header is present: a reader that allocated first and read
        // second would fail with an i/o error instead of TooLong.
        let mut cursor = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        match read_frame(&mut cursor, MAX_FRAME_LEN) {
            Err(FrameError::TooLong { size, max }) => {
                assert_eq!(size, u32::MAX);
                assert_eq!(max, MAX_FRAME_LEN);
            }
            other => panic!("expected TooLong, got {other:?}"),
        }
    }

    #[test]
    fn applies_the_callers_tighter_limit() {
        let bytes = encode_frame(FrameKind::Control, &[b' '; 100]).unwrap();
        let result = read_frame(&mut Cursor::new(bytes), 50);
        assert!(matches!(result, Err(FrameError::TooLong { size: 101, max: 50 })));
    }

    #[test]
    fn rejects_empty_unknown_and_truncated_frames() {
        assert!(matches!(read_frame(&mut Cursor::new(vec![0, 0, 0, 0]), 99), Err(FrameError::Empty)));
        let unknown = read_frame(&mut Cursor::new(vec![0, 0, 0, 1, 9]), 99);
        assert!(matches!(unknown, Err(FrameError::UnknownKind(9))));
        let truncated = read_frame(&mut Cursor::new(vec![0, 0, 0, 9, 0, 1, 2]), 99);
        assert!(matches!(truncated, Err(FrameError::Io(_))));
        let half_header = read_frame(&mut Cursor::new(vec![0, 0]), 99);
        assert!(matches!(half_header, Err(FrameError::Io(_))));
    }
}
