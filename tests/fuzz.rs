//! Property-based fuzzing of every decoder that reads network input, with a
//! fixed seed and a bounded number of cases so it runs the same way in CI,
//! plus the saved corpus of tricky inputs in `tests/corpus/`. `make fuzz`
//! runs the coverage-guided fuzzers in `fuzz/` for longer.

use std::io::Cursor;

use ciphercast::shared::frame::{Frame, FrameKind, encode_frame, read_frame};
use ciphercast::shared::limits::MAX_FRAME_LEN;
use ciphercast::shared::message::{ClientMessage, decode};
use ciphercast::shared::names::validate_name;
use ciphercast::shared::visible::visible;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn exercise(bytes: &[u8]) {
    ciphercast::shared::decode_untrusted(bytes);
}

fn config() -> Config {
    Config { cases: 1000, rng_seed: RngSeed::Fixed(0x000c_1fe4_ca57), failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..4096)) {
        exercise(&bytes);
    }

    #[test]
    fn random_payloads_in_valid_frames_never_panic(kind in 0u8..2, payload in vec(any::<u8>(), 0..2048)) {
        let kind = if kind == 0 { FrameKind::Control } else { FrameKind::Video };
        exercise(&encode_frame(kind, &payload).unwrap());
    }

    #[test]
    fn json_shaped_messages_never_panic(
        kind in "(hello|send|quit|list_videos|play|stop|welcome|sealed|peer_joined|stream_end|[a-z_]{0,10})",
        fields in vec(("[a-z_]{1,12}", "(null|true|-?[0-9]{1,20}|\"[^\"\\\\]{0,16}\"|\\[\\]|\\{\\}|1e999)"), 0..6),
    ) {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!(",\"{k}\":{v}")).collect();
        let json = format!("{{\"type\":\"{kind}\"{}}}", body.concat());
        exercise(&encode_frame(FrameKind::Control, json.as_bytes()).unwrap());
    }

    #[test]
    fn frames_round_trip(kind in 0u8..2, payload in vec(any::<u8>(), 0..4096)) {
        let kind = if kind == 0 { FrameKind::Control } else { FrameKind::Video };
        let bytes = encode_frame(kind, &payload).unwrap();
        let frame = read_frame(&mut Cursor::new(bytes), MAX_FRAME_LEN).unwrap();
        prop_assert_eq!(frame, Frame { kind, payload });
    }

    #[test]
    fn quit_and_hello_round_trip_for_any_valid_name(name in "\\PC{1,32}") {
        prop_assume!(validate_name(&name).is_ok());
        let hello = ClientMessage::Hello { version: 1, name, public_key: "k".into() };
        let bytes = ciphercast::shared::message::encode(&hello).unwrap();
        let frame = read_frame(&mut Cursor::new(bytes), MAX_FRAME_LEN).unwrap();
        prop_assert_eq!(decode::<ClientMessage>(&frame).unwrap(), hello);
    }

    #[test]
    fn nothing_made_visible_keeps_a_control_character(text in any::<String>()) {
        let shown = visible(&text);
        prop_assert!(!shown.chars().any(ciphercast::shared::names::is_control_or_format));
    }
}

#[test]
fn the_saved_corpus_is_handled_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/corpus") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            exercise(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count >= 10, "the corpus lost files: {count}");
}
