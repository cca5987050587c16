//! Everything a peer's bytes reach: frames, then each frame through both
//! message decoders and the video frame header decoder. Any panic is a bug;
//! save the input in `tests/corpus/` as a regression.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| ciphercast::shared::decode_untrusted(bytes));
