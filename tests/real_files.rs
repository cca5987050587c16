//! Files as instructors bring them, not as `ciphercast videos` makes them:
//! a header that claims more frames than decode, damaged bytes in the
//! middle, a fractional frame rate. Each clip is made here with OpenCV's
//! VideoWriter and then broken on purpose; each must play to its end,
//! `finished`, with a count that matches what the file really holds.

mod support;

use std::path::{Path, PathBuf};

use ciphercast::server::Config;
use ciphercast::shared::frame::FrameKind;
use ciphercast::shared::message::{ClientMessage, ServerMessage, decode};
use ciphercast::shared::video::{EndReason, FrameHeader, Pace};
use opencv::core::{Mat, Point, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio::{CAP_FFMPEG, CAP_PROP_FRAME_COUNT, VideoCapture, VideoWriter};
use support::{Process, Stream, Summary, TestClient, TestServer, identity};

/// Writes `frames` frames of `width`×`height` at `fps`, each with its number drawn in.
fn write_clip(path: &Path, fourcc: [char; 4], fps: f64, frames: u32, width: i32, height: i32) {
    let [a, b, c, d] = fourcc;
    let fourcc = VideoWriter::fourcc(a, b, c, d).unwrap();
    let mut writer = VideoWriter::new(path, fourcc, fps, Size::new(width, height), true).unwrap();
    assert!(writer.is_opened().unwrap(), "no {fourcc} writer for {}", path.display());
    for n in 0..frames {
        let shade = f64::from(n * 7 % 200);
        let mut frame =
            Mat::new_rows_cols_with_default(height, width, opencv::core::CV_8UC3, Scalar::new(shade, 80.0, 40.0, 0.0))
                .unwrap();
        let origin = Point::new(4, height / 2);
        let white = Scalar::all(255.0);
        imgproc::put_text(&mut frame, &n.to_string(), origin, imgproc::FONT_HERSHEY_SIMPLEX, 1.0, white, 2, 8, false)
            .unwrap();
        writer.write(&frame).unwrap();
    }
    writer.release().unwrap();
}

/// The container's frame count and how many frames reading in order yields.
fn claimed_and_decoded(path: &Path) -> (u32, u32) {
    let mut capture = VideoCapture::from_file(path, CAP_FFMPEG).unwrap();
    let claimed = capture.get(CAP_PROP_FRAME_COUNT).unwrap() as u32;
    let mut picture = Mat::default();
    let mut decoded = 0;
    while decoded < 10 * claimed && capture.read(&mut picture).unwrap_or(false) {
        decoded += 1;
    }
    (claimed, decoded)
}

/// Overwrites `fraction_start..fraction_end` of the file's bytes.
fn damage(path: &Path, fraction_start: f64, fraction_end: f64) {
    let mut bytes = std::fs::read(path).unwrap();
    let (from, to) = ((bytes.len() as f64 * fraction_start) as usize, (bytes.len() as f64 * fraction_end) as usize);
    bytes[from..to].fill(0);
    std::fs::write(path, bytes).unwrap();
}

fn library(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ciphercast-real-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One playback as a raw viewer saw it.
struct Played {
    fps: f64,
    announced: u32,
    frames: Vec<FrameHeader>,
    end: ServerMessage,
}

fn play(server: &TestServer, video: &str) -> Played {
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    viewer.send(&ClientMessage::Play { video: video.into(), pace: Pace::None, start: None, plan: None });
    let mut played = Played { fps: 0.0, announced: 0, frames: Vec::new(), end: ServerMessage::Goodbye };
    for _ in 0..10_000 {
        let frame = viewer.read_frame();
        if frame.kind == FrameKind::Video {
            played.frames.push(FrameHeader::decode(&frame.payload).expect("frame header").0);
            continue;
        }
        match decode::<ServerMessage>(&frame).expect("control message") {
            ServerMessage::StreamStart { fps, frames, .. } => (played.fps, played.announced) = (fps, frames),
            end @ ServerMessage::StreamEnd { .. } => {
                played.end = end;
                return played;
            }
            _ => {}
        }
    }
    panic!("no stream end");
}

fn sequences(played: &Played) -> Vec<u32> {
    played.frames.iter().map(|f| f.sequence).collect()
}

#[test]
fn a_header_that_overstates_the_frame_count_plays_to_its_end() {
    let dir = library("truncated");
    let path = dir.join("lecture.avi");
    write_clip(&path, ['M', 'J', 'P', 'G'], 30.0, 60, 160, 120);
    // An AVI keeps its frame count at the front: cut off, it still claims 60.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 5]).unwrap();
    let (claimed, decoded) = claimed_and_decoded(&path);
    assert!(claimed == 60 && decoded > 0 && decoded < 60, "the clip does not lie: {claimed} claimed, {decoded} decode");

    let server = TestServer::start(Config { videos: dir, ..Config::default() });
    let played = play(&server, "lecture");
    assert_eq!(played.announced, decoded, "the plan covers the frames that decode");
    assert_eq!(sequences(&played), (0..decoded).collect::<Vec<_>>());
    let ServerMessage::StreamEnd { reason, frames, total, message, .. } = played.end else { unreachable!() };
    assert_eq!((reason, frames, total, message), (EndReason::Finished, decoded, Some(decoded), None));

    // The client binary says so too: every frame of the real count, no error.
    let address = server.addr.to_string();
    let mut client = Process::start(&["client", "--server", &address, "--name", "amy", "--display", "none"]);
    client.type_text("2\nlecture\n");
    let line = client.wait_for(Stream::Out, "summary:");
    let summary = Summary::parse(&line);
    assert_eq!((summary.received, summary.total), (decoded, decoded), "{line}");
    assert_eq!(client.finish(), 0);
    assert!(!client.stderr.iter().any(|l| l.contains("error")), "{:?}", client.stderr);
}

#[test]
fn damaged_frames_in_the_middle_are_skipped_and_the_rest_still_plays() {
    let dir = library("damaged");
    let path = dir.join("damaged.mp4");
    write_clip(&path, ['m', 'p', '4', 'v'], 30.0, 90, 320, 240);
    damage(&path, 0.40, 0.46);
    let (claimed, decoded) = claimed_and_decoded(&path);
    assert!(claimed == 90 && decoded < 90, "the damage did not stop reading in order ({decoded} of {claimed})");

    let server = TestServer::start(Config { videos: dir, ..Config::default() });
    let played = play(&server, "damaged");
    let ServerMessage::StreamEnd { reason, frames, total, .. } = played.end else { unreachable!() };
    assert_eq!(reason, EndReason::Finished);
    let sent = sequences(&played);
    assert_eq!(frames as usize, sent.len());
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "in order: {sent:?}");
    assert_eq!(sent.last(), Some(&89), "played to the end: {sent:?}");
    assert!(sent.len() > decoded as usize && sent.len() < 90, "only the damaged frames were skipped: {sent:?}");
    assert_eq!(total, Some(90));
}

#[test]
fn a_fractional_frame_rate_is_paced_by_its_own_clock() {
    let dir = library("ntsc");
    write_clip(&dir.join("film.mp4"), ['m', 'p', '4', 'v'], 24_000.0 / 1001.0, 48, 160, 120);
    let server = TestServer::start(Config { videos: dir, ..Config::default() });
    let played = play(&server, "film");
    assert!((played.fps - 23.976).abs() < 0.001, "fps {}", played.fps);
    assert_eq!(played.frames.len(), 48);
    for frame in &played.frames {
        let due = u64::from(frame.sequence) * 1_001_000_000 / 24_000;
        assert!(
            frame.pts_micros.abs_diff(due) < 1_000,
            "frame {} at {} µs, due {due}",
            frame.sequence,
            frame.pts_micros
        );
    }
    assert!(matches!(played.end, ServerMessage::StreamEnd { reason: EndReason::Finished, frames: 48, .. }));
}
