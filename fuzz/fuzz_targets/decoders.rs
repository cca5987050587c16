//! Everything a peer's bytes reach: frames, then each frame through both
//! message decoders and the video frame header decoder. Any panic is a bug;
//! save the input in `tests/corpus/` as a regression.
#![no_main]

use std::io::Cursor;

use ciphercast::shared::frame::read_frame;
use ciphercast::shared::limits::MAX_FRAME_LEN;
use ciphercast::shared::message::{ClientMessage, ServerMessage, decode};
use ciphercast::shared::video::FrameHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut cursor = Cursor::new(bytes);
    for _ in 0..64 {
        let Ok(frame) = read_frame(&mut cursor, MAX_FRAME_LEN) else { return };
        let _ = decode::<ClientMessage>(&frame);
        let _ = decode::<ServerMessage>(&frame);
        let _ = FrameHeader::decode(&frame.payload);
    }
});
