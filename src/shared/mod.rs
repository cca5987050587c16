//! What client and server share: the wire protocol and the cryptography.
//!
//! The protocol has three layers, each in its own file and testable alone:
//! [`frame`] turns bytes into frames, [`message`] turns frames into typed
//! messages, and [`connection`] wraps a socket with buffered frame I/O.

pub mod connection;
pub mod crypto;
pub mod frame;
pub mod limits;
pub mod message;
pub mod names;
pub mod trace;
pub mod video;
pub mod visible;

/// Feeds untrusted bytes through every decoder a peer's bytes reach — frames
/// (up to 64 of them), then each frame as a client message, a server message
/// and a video frame header — and discards the results. It must return for
/// any input without panicking; the fuzzers (`tests/fuzz.rs`, `fuzz/`) call it.
pub fn decode_untrusted(bytes: &[u8]) {
    let mut cursor = std::io::Cursor::new(bytes);
    for _ in 0..64 {
        let Ok(frame) = frame::read_frame(&mut cursor, limits::MAX_FRAME_LEN) else { return };
        let _ = message::decode::<message::ClientMessage>(&frame);
        let _ = message::decode::<message::ServerMessage>(&frame);
        let _ = video::FrameHeader::decode(&frame.payload);
    }
}
