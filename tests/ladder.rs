//! `ciphercast videos --from`: the ladder made from a clip the test writes
//! itself, listed and streamed in thirds by a real server over real
//! sockets; bad input refused with exit status 2 before any work; nothing
//! left under a final name when the work is cut short; and the library's
//! naming rules (the ladder wins over a plain file of the same name, hidden
//! files are never listed).

mod support;

use std::path::{Path, PathBuf};

use ciphercast::server::Config;
use ciphercast::shared::frame::{FrameKind, encode_frame};
use ciphercast::shared::message::{ClientMessage, ServerMessage, VideoInfo, decode};
use ciphercast::shared::video::{EndReason, FrameHeader};
use opencv::core::{CV_8UC3, Mat, Point, Scalar, Size, Vector};
use opencv::imgcodecs::{IMREAD_COLOR, imdecode};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio::{CAP_FFMPEG, CAP_PROP_FPS, VideoCapture, VideoWriter};
use support::{Process, TestClient, TestServer, clips, clips_at, identity};

/// A directory of the test's own, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ciphercast-ladder-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a clip of `frames` frames of `size` at `fps`: a ball crossing a
/// grey background, so that every frame differs.
fn make_clip(path: &Path, size: Size, fps: f64, frames: u32) {
    let fourcc = VideoWriter::fourcc('m', 'p', '4', 'v').unwrap();
    let mut writer = VideoWriter::new_with_backend(path, CAP_FFMPEG, fourcc, fps, size, true).unwrap();
    assert!(writer.is_opened().unwrap(), "cannot write {}", path.display());
    let mut frame = Mat::new_rows_cols_with_default(size.height, size.width, CV_8UC3, Scalar::all(0.0)).unwrap();
    for n in 0..frames {
        frame.set_to(&Scalar::new(90.0, 90.0, 90.0, 0.0), &opencv::core::no_array()).unwrap();
        let x = (n as i32 * size.width) / frames as i32;
        let center = Point::new(x, size.height / 2);
        imgproc::circle(&mut frame, center, size.height / 4, Scalar::new(0.0, 220.0, 255.0, 0.0), -1, 8, 0).unwrap();
        writer.write(&frame).unwrap();
    }
    writer.release().unwrap();
}

/// What OpenCV's FFmpeg backend reads in a file: its size, its rate, and
/// how many frames really decode.
fn read_back(path: &Path) -> (Size, f64, u32) {
    let mut capture = VideoCapture::from_file(path, CAP_FFMPEG).unwrap();
    assert!(capture.is_opened().unwrap(), "{} does not open", path.display());
    let fps = capture.get(CAP_PROP_FPS).unwrap();
    let (mut frame, mut size, mut frames) = (Mat::default(), Size::default(), 0);
    while capture.read(&mut frame).unwrap_or(false) && !frame.empty() {
        size = frame.size().unwrap();
        frames += 1;
    }
    (size, fps, frames)
}

/// Runs `ciphercast ARGS…` to its end; its exit status, stdout and stderr.
fn ciphercast(args: &[&str]) -> (i32, String, String) {
    let mut process = Process::start(args);
    let status = process.finish();
    (status, process.stdout.join("\n"), process.stderr.join("\n"))
}

/// The names in a directory, sorted (hidden ones included).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The server's listing, as (name, resolutions) pairs.
fn listed(client: &mut TestClient) -> Vec<(String, Vec<String>)> {
    client.send(&ClientMessage::ListVideos);
    match client.recv_until("the video list", |m| matches!(m, ServerMessage::VideoList { .. })) {
        ServerMessage::VideoList { videos } => {
            videos.into_iter().map(|VideoInfo { name, resolutions, .. }| (name, resolutions)).collect()
        }
        _ => unreachable!(),
    }
}

/// What a viewer saw of one playback.
struct Playback {
    /// The plan from `stream_start`, as (label, first, last).
    plan: Vec<(String, u32, u32)>,
    /// Each frame's resolution label and the height its JPEG decodes to.
    frames: Vec<(String, i32)>,
    end: EndReason,
}

/// Plays `video` as fast as the client reads (the `play` message as JSON,
/// so that options added to it later leave this test as it is).
fn play(client: &mut TestClient, video: &str) -> Playback {
    let play = format!(r#"{{"type":"play","video":"{video}","pace":"none"}}"#);
    client.send_raw(&encode_frame(FrameKind::Control, play.as_bytes()).unwrap());
    let (mut plan, mut frames) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        let frame = client.read_frame();
        if frame.kind == FrameKind::Video {
            let (header, jpeg) = FrameHeader::decode(&frame.payload).expect("frame header");
            assert_eq!(header.sequence as usize, frames.len(), "frames out of order");
            let picture = imdecode(&Vector::<u8>::from_slice(jpeg), IMREAD_COLOR).expect("a JPEG");
            frames.push((header.resolution, picture.rows()));
            continue;
        }
        match decode::<ServerMessage>(&frame).expect("control message") {
            ServerMessage::StreamStart { plan: parts, .. } => {
                plan = parts.into_iter().map(|p| (p.resolution, p.first, p.last)).collect();
            }
            ServerMessage::StreamEnd { reason, .. } => return Playback { plan, frames, end: reason },
            _ => {}
        }
    }
    panic!("no stream end");
}

#[test]
fn a_ladder_made_from_a_clip_lists_as_three_resolutions_and_streams_in_thirds() {
    let dir = TempDir::new("thirds");
    // 360 high (not a height of the ladder), 16:9, at 24000/1001 fps.
    let source = dir.join("Lecture.mp4");
    make_clip(&source, Size::new(640, 360), 24000.0 / 1001.0, 36);
    let (_, source_fps, _) = read_back(&source);
    let library = dir.join("library");
    let (status, stdout, stderr) =
        ciphercast(&["videos", "--from", source.to_str().unwrap(), "--out", library.to_str().unwrap()]);
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l.contains("upscaled") && l.contains("720p") && l.contains("1440p")),
        "the upscaled heights are not named: {stdout}"
    );
    assert!(stdout.contains("36 frames"), "no line for the file when piped: {stdout}");
    assert_eq!(listing(&library), ["Lecture_1440p.mp4", "Lecture_240p.mp4", "Lecture_720p.mp4"]);
    for height in [240, 720, 1440] {
        let (size, fps, frames) = read_back(&library.join(format!("Lecture_{height}p.mp4")));
        assert_eq!((size.height, frames), (height, 36), "Lecture_{height}p.mp4");
        assert_eq!(size.width % 2, 0, "Lecture_{height}p.mp4 is {size:?}: an odd width");
        let aspect = f64::from(size.width) / f64::from(size.height);
        assert!((aspect - 640.0 / 360.0).abs() <= 2.0 / f64::from(height), "Lecture_{height}p.mp4 is {size:?}");
        assert!((fps - source_fps).abs() < 1e-6, "Lecture_{height}p.mp4 at {fps} fps, the source at {source_fps}");
    }

    let server = TestServer::start(Config { videos: library, ..Config::default() });
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    let labels: Vec<String> = ["240p", "720p", "1440p"].map(String::from).to_vec();
    assert_eq!(listed(&mut viewer), [("Lecture".to_string(), labels)]);
    let got = play(&mut viewer, "Lecture");
    let plan: Vec<(&str, u32, u32)> =
        got.plan.iter().map(|(label, first, last)| (label.as_str(), *first, *last)).collect();
    assert_eq!(plan, [("240p", 0, 11), ("720p", 12, 23), ("1440p", 24, 35)]);
    assert_eq!(got.end, EndReason::Finished);
    assert_eq!(got.frames.len(), 36);
    for (i, (label, height)) in got.frames.iter().enumerate() {
        let expected = [240, 720, 1440][i / 12];
        assert_eq!((label.as_str(), *height), (format!("{expected}p").as_str(), expected), "frame {i}");
    }
}

#[test]
fn a_file_that_is_not_a_video_or_is_missing_exits_2_before_any_work() {
    let dir = TempDir::new("bad-input");
    let good = dir.join("Good.mp4");
    make_clip(&good, Size::new(64, 48), 10.0, 5);
    std::fs::write(dir.join("notes.mp4"), "these are my notes, not a video").unwrap();
    let out = dir.join("out");
    let out_arg = out.to_str().unwrap();
    for (bad, why) in [("notes.mp4", "not a video"), ("missing.mp4", "cannot read")] {
        let bad = dir.join(bad);
        // The good file comes first: it is not made either, since every input is checked first.
        let args = ["videos", "--from", good.to_str().unwrap(), bad.to_str().unwrap(), "--out", out_arg];
        let (status, stdout, stderr) = ciphercast(&[&args[..], &["--heights", "24"]].concat());
        assert_eq!(status, 2, "{stdout}\n{stderr}");
        assert!(stderr.contains(bad.to_str().unwrap()) && stderr.contains(why), "unclear error: {stderr}");
        assert!(!stderr.contains("GStreamer") && !stderr.contains("gst_"), "backend noise: {stderr}");
        assert_eq!(listing(&out), Vec::<String>::new(), "something was written");
    }
}

#[test]
fn bad_heights_and_the_demo_options_are_usage_errors() {
    let dir = TempDir::new("usage");
    let clip = dir.join("Clip.mp4");
    make_clip(&clip, Size::new(64, 48), 10.0, 5);
    let (clip, out) = (clip.to_str().unwrap(), dir.join("out"));
    let out = out.to_str().unwrap();
    for (extra, expected) in [
        (&["--heights", "25"][..], "--heights"),
        (&["--heights", "4"][..], "--heights"),
        (&["--seconds", "2"][..], "--seconds"),
        (&["--fps", "10"][..], "--fps"),
    ] {
        let (status, stdout, stderr) = ciphercast(&[&["videos", "--from", clip, "--out", out][..], extra].concat());
        assert_eq!(status, 2, "{extra:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    assert!(!Path::new(out).exists(), "a usage error wrote something");
}

#[test]
fn an_existing_output_is_refused_without_force_and_replaced_with_it() {
    let dir = TempDir::new("force");
    let clip = dir.join("Clip.mp4");
    make_clip(&clip, Size::new(64, 48), 10.0, 10);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("Clip_48p.mp4"), "an older file").unwrap();
    let args = ["videos", "--from", clip.to_str().unwrap(), "--out", out.to_str().unwrap(), "--heights", "24,48"];
    let (status, stdout, stderr) = ciphercast(&args);
    assert_eq!(status, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("Clip_48p.mp4 exists") && stderr.contains("--force"), "unclear error: {stderr}");
    // Checked before any work: not even the 24p file was made.
    assert_eq!(listing(&out), ["Clip_48p.mp4"]);
    assert_eq!(std::fs::read_to_string(out.join("Clip_48p.mp4")).unwrap(), "an older file");

    let (status, stdout, stderr) = ciphercast(&[&args[..], &["--force"]].concat());
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    assert_eq!(listing(&out), ["Clip_24p.mp4", "Clip_48p.mp4"]);
    for height in [24, 48] {
        let (size, _, frames) = read_back(&out.join(format!("Clip_{height}p.mp4")));
        assert_eq!((size, frames), (Size::new(height * 4 / 3, height), 10), "Clip_{height}p.mp4");
    }
}

#[test]
fn an_interrupted_ladder_leaves_nothing_under_its_final_names() {
    let dir = TempDir::new("interrupted");
    let clip = dir.join("Long.mp4");
    // Long enough at these heights that the work is still going on when
    // the signal comes (a few seconds): checked below before it is sent.
    make_clip(&clip, Size::new(128, 96), 30.0, 300);
    let out = dir.join("out");
    let args = ["videos", "--from", clip.to_str().unwrap(), "--out", out.to_str().unwrap(), "--heights", "720,1440"];
    let mut process = Process::start(&args);
    support::wait_until("a temporary file", || listing(&out).iter().any(|name| name.starts_with('.')));
    // Written under hidden names only, while the work goes on.
    assert!(listing(&out).iter().all(|name| name.starts_with('.')), "{:?}", listing(&out));
    assert!(process.child.try_wait().unwrap().is_none(), "the work ended before the test could interrupt it");
    let pid = process.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    assert_eq!(process.finish(), 1, "{:?} {:?}", process.stdout, process.stderr);
    assert!(process.stderr.iter().any(|l| l.contains("interrupted")), "{:?}", process.stderr);
    assert_eq!(listing(&out), Vec::<String>::new(), "files left behind");
}

#[test]
fn a_plain_file_beside_its_ladder_and_hidden_files_are_not_listed() {
    let dir = TempDir::new("naming");
    let ladder = clips(2); // Video_1 and Video_2 at 24p, 48p, 96p
    let other = clips_at(2, &[72]).join("Video_1_72p.mp4");
    for height in [24, 48, 96] {
        let file = format!("Video_1_{height}p.mp4");
        std::fs::copy(ladder.join(&file), dir.join(&file)).unwrap();
    }
    // Video_1.mp4 is a plain file of a name that has a ladder: left out
    // (were it not, its 72p would be listed as one more resolution).
    std::fs::copy(&other, dir.join("Video_1.mp4")).unwrap();
    // Solo.mp4 has no ladder: a video of one resolution.
    std::fs::copy(&other, dir.join("Solo.mp4")).unwrap();
    // Hidden files and directories, e.g. a half-written rendition and the store.
    std::fs::copy(ladder.join("Video_2_24p.mp4"), dir.join(".Video_2_24p.mp4.123.part.mp4")).unwrap();
    std::fs::copy(&other, dir.join(".secret.mp4")).unwrap();
    std::fs::create_dir_all(dir.join(".ciphercast")).unwrap();
    std::fs::copy(&other, dir.join(".ciphercast/Video_3_72p.mp4")).unwrap();

    let server = TestServer::start(Config { videos: dir.0.clone(), ..Config::default() });
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    let labels = |list: &[&str]| list.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert_eq!(
        listed(&mut viewer),
        [("Solo".to_string(), labels(&["72p"])), ("Video_1".to_string(), labels(&["24p", "48p", "96p"]))]
    );
    let got = play(&mut viewer, "Video_1");
    assert_eq!(got.end, EndReason::Finished);
    assert_eq!(got.plan.iter().map(|(label, ..)| label.as_str()).collect::<Vec<_>>(), ["24p", "48p", "96p"]);
    for hidden in [".secret", ".Video_2"] {
        let got = play(&mut viewer, hidden);
        assert_eq!((got.frames.len(), got.end), (0, EndReason::Error), "{hidden} was played");
    }
}
