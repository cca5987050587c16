//! Video streaming end to end: tiny generated clips, a real server, raw
//! protocol viewers and the client binary with `--display none`.

mod support;

use std::time::{Duration, Instant};

use ciphercast::server::Config;
use ciphercast::shared::frame::{FrameError, FrameKind};
use ciphercast::shared::message::{ClientMessage, ServerMessage, VideoInfo};
use ciphercast::shared::video::{EndReason, FrameHeader, Pace, PlanPart};
use opencv::core::Vector;
use opencv::imgcodecs::{IMREAD_COLOR, imdecode};
use opencv::prelude::*;
use support::{Process, Stream, Summary, TestClient, TestServer, clips, clips_at, identity, peer_key};

fn server_with(videos: std::path::PathBuf) -> TestServer {
    TestServer::start(Config { videos, ..Config::default() })
}

/// Everything a viewer received for one playback.
struct Received {
    start: Option<(u32, u32, Vec<PlanPart>)>,
    frames: Vec<(FrameHeader, i32)>,
    /// Other control messages that came during the playback, in order.
    others: Vec<ServerMessage>,
    end: (EndReason, u32, Option<String>),
    elapsed: Duration,
}

/// Asks for `video` and reads until the stream ends; frames are decoded to check their height.
fn play(client: &mut TestClient, video: &str, pace: Pace) -> Received {
    client.send(&ClientMessage::Play { video: video.into(), pace, start: None, plan: None });
    let started = Instant::now();
    let mut received = Received {
        start: None,
        frames: Vec::new(),
        others: Vec::new(),
        end: (EndReason::Error, 0, None),
        elapsed: Duration::ZERO,
    };
    for _ in 0..10_000 {
        let frame = client.read_frame();
        if frame.kind == FrameKind::Video {
            let (header, jpeg) = FrameHeader::decode(&frame.payload).expect("frame header");
            let picture = imdecode(&Vector::<u8>::from_slice(jpeg), IMREAD_COLOR).expect("a JPEG");
            received.frames.push((header, picture.rows()));
            continue;
        }
        match ciphercast::shared::message::decode::<ServerMessage>(&frame).expect("control message") {
            ServerMessage::StreamStart { stream, frames, plan, .. } => received.start = Some((stream, frames, plan)),
            ServerMessage::StreamEnd { reason, frames, message, .. } => {
                received.end = (reason, frames, message);
                received.elapsed = started.elapsed();
                return received;
            }
            other => received.others.push(other),
        }
    }
    panic!("no stream end");
}

#[test]
fn the_listing_groups_resolutions_and_sees_new_files_without_a_restart() {
    let dir = tempdir("listing");
    let server = server_with(dir.clone());
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    viewer.send(&ClientMessage::ListVideos);
    assert_eq!(viewer.recv(), ServerMessage::VideoList { videos: vec![] });
    for file in std::fs::read_dir(clips(2)).unwrap().flatten() {
        std::fs::copy(file.path(), dir.join(file.file_name())).unwrap();
    }
    std::fs::write(dir.join("README.md"), "not a video").unwrap();
    viewer.send(&ClientMessage::ListVideos);
    let labels = vec!["24p".to_string(), "48p".into(), "96p".into()];
    let expected = vec![
        VideoInfo { name: "Video_1".into(), resolutions: labels.clone(), prepared: None },
        VideoInfo { name: "Video_2".into(), resolutions: labels, prepared: None },
    ];
    assert_eq!(viewer.recv(), ServerMessage::VideoList { videos: expected });
}

#[test]
fn every_frame_arrives_in_order_from_the_planned_resolution() {
    let server = server_with(clips(2));
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    let got = play(&mut viewer, "Video_2", Pace::None);
    let (_, announced, plan) = got.start.expect("a stream start");
    assert_eq!(announced, 20);
    let parts: Vec<(&str, u32, u32)> = plan.iter().map(|p| (p.resolution.as_str(), p.first, p.last)).collect();
    assert_eq!(parts, [("24p", 0, 5), ("48p", 6, 12), ("96p", 13, 19)]);
    assert_eq!(got.end, (EndReason::Finished, 20, None));
    assert_eq!(got.frames.len(), 20);
    for (i, (header, height)) in got.frames.iter().enumerate() {
        assert_eq!(header.sequence, i as u32, "frames out of order");
        assert_eq!(header.pts_micros, i as u64 * 100_000, "presentation times not continuous");
        let expected = if i <= 5 {
            24
        } else if i <= 12 {
            48
        } else {
            96
        };
        assert_eq!(header.resolution, format!("{expected}p"));
        assert_eq!(*height, expected, "frame {i} was not decoded from the {expected}p file");
    }
}

#[test]
fn native_pace_takes_about_as_long_as_the_clip() {
    let server = server_with(clips(2));
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    let got = play(&mut viewer, "Video_1", Pace::Native);
    assert_eq!(got.end.0, EndReason::Finished);
    assert_eq!(got.frames.len(), 20);
    // A generous lower bound only: the last frame is due at 1.9 s.
    assert!(got.elapsed >= Duration::from_millis(1600), "20 frames at 10 fps took only {:?}", got.elapsed);
}

#[test]
fn two_viewers_watch_at_once() {
    let server = server_with(clips(2));
    let (mut one, _) = TestClient::join(server.addr, "one", identity(0));
    let (mut two, _) = TestClient::join(server.addr, "two", identity(1));
    let first = std::thread::spawn(move || play(&mut one, "Video_1", Pace::Native));
    let second = play(&mut two, "Video_2", Pace::Native);
    let first = first.join().expect("first viewer");
    for got in [first, second] {
        assert_eq!(got.end, (EndReason::Finished, 20, None));
        assert_eq!(got.frames.len(), 20);
    }
}

#[test]
fn unknown_and_path_like_names_are_refused_and_the_server_carries_on() {
    let server = server_with(clips(2));
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    for name in ["Nope", "../Video_1", "/etc/passwd", "Video_1_24p.mp4", ""] {
        let got = play(&mut viewer, name, Pace::None);
        assert!(got.start.is_none() && got.frames.is_empty(), "{name:?} was streamed");
        assert_eq!(got.end.0, EndReason::Error, "{name:?}");
        assert!(got.end.2.as_deref().unwrap_or("").contains("no video named"), "{name:?}: {:?}", got.end.2);
    }
    assert_eq!(play(&mut viewer, "Video_1", Pace::None).end.0, EndReason::Finished);
}

#[test]
fn a_corrupt_file_ends_with_error_while_the_server_stays_up() {
    let dir = tempdir("corrupt");
    for file in std::fs::read_dir(clips(2)).unwrap().flatten() {
        std::fs::copy(file.path(), dir.join(file.file_name())).unwrap();
    }
    std::fs::write(dir.join("Broken_240p.mp4"), vec![0x42; 4096]).unwrap();
    let server = server_with(dir);
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    let got = play(&mut viewer, "Broken", Pace::None);
    assert_eq!(got.end.0, EndReason::Error);
    assert!(got.end.2.as_deref().unwrap_or("").contains("Broken_240p.mp4"), "{:?}", got.end.2);
    let (mut other, _) = TestClient::join(server.addr, "other", identity(1));
    assert_eq!(play(&mut other, "Video_2", Pace::None).end, (EndReason::Finished, 20, None));
}

#[test]
fn a_second_play_while_one_runs_is_refused_but_one_after_the_end_is_not() {
    let server = server_with(clips(20));
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    viewer.send(&ClientMessage::Play { video: "Video_1".into(), pace: Pace::Native, start: None, plan: None });
    let first = match viewer.recv() {
        ServerMessage::StreamStart { stream, .. } => stream,
        other => panic!("expected a stream start, got {other:?}"),
    };
    // While stream 1 plays, a second play is answered with an error end of
    // its own; stream 1 goes on until it is stopped.
    viewer.send(&ClientMessage::Play { video: "Video_2".into(), pace: Pace::Native, start: None, plan: None });
    viewer.send(&ClientMessage::Stop { stream: first });
    let mut ends = Vec::new();
    while ends.len() < 2 {
        let frame = viewer.read_frame();
        if frame.kind == FrameKind::Control
            && let ServerMessage::StreamEnd { stream, reason, message, .. } =
                ciphercast::shared::message::decode(&frame).unwrap()
        {
            ends.push((stream, reason, message.unwrap_or_default()));
        }
    }
    let refused = ends.iter().find(|(stream, ..)| *stream != first).expect("an end for the second play");
    assert_eq!(refused.1, EndReason::Error);
    assert!(refused.2.contains("already playing"), "{refused:?}");
    assert!(ends.iter().any(|(stream, reason, _)| *stream == first && *reason == EndReason::Stopped), "{ends:?}");
    // Straight after the end: accepted.
    assert_eq!(play(&mut viewer, "Video_1", Pace::None).end.0, EndReason::Finished);
}

#[test]
fn shutdown_during_a_stream_tells_the_viewer_and_returns() {
    let mut server = server_with(clips(20));
    let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
    let (mut chatter, _) = TestClient::join(server.addr, "chatter", identity(1));
    let mut pending = TestClient::connect(server.addr); // connected, never joins
    viewer.send(&ClientMessage::Play { video: "Video_1".into(), pace: Pace::Native, start: None, plan: None });
    next_video_frame(&mut viewer);
    // The viewer reads on, in its own thread, until its connection ends.
    let watching = std::thread::spawn(move || viewer.frames_until_closed(10_000));
    server.stop(); // panics if the server does not return in time
    let (frames, end) = support::join_bounded("the viewer", watching);
    let controls: Vec<ServerMessage> = frames
        .iter()
        .filter(|f| f.kind == FrameKind::Control)
        .map(|f| ciphercast::shared::message::decode(f).expect("control message"))
        .collect();
    assert!(controls.iter().any(|m| matches!(m, ServerMessage::ServerClosing { .. })), "{controls:?}");
    assert!(frames.len() < 200, "the stream played to its end before the server stopped");
    assert!(matches!(end, support::End::Closed), "the viewer's connection ended with {end:?}");
    let rest = chatter.recv_until_closed();
    assert!(rest.iter().any(|m| matches!(m, ServerMessage::ServerClosing { .. })), "{rest:?}");
    // A connection that never joined is closed, with at most a refusal.
    let rest = pending.recv_until_closed();
    assert!(rest.iter().all(|m| matches!(m, ServerMessage::Refused { .. })), "{rest:?}");
}

/// Threads of a process, from /proc.
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// Waits (bounded) until the process has `count` threads.
fn wait_for_threads(pid: u32, count: usize) {
    let deadline = Instant::now() + support::TIMEOUT;
    while thread_count(pid) != count {
        assert!(Instant::now() < deadline, "server has {} threads, expected {count}", thread_count(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stop_and_disconnect_mid_stream_end_the_streaming_thread() {
    let videos = clips(20);
    // No store: its preparing thread (and OpenCV's threads for it) would come and go while threads are counted.
    let (mut server, address) = Process::server(&["--videos", videos.to_str().unwrap(), "--store", "none"]);
    let pid = server.child.id();
    let (mut viewer, _) = TestClient::join(address, "viewer", identity(0));
    viewer.send(&ClientMessage::ListVideos);
    viewer.recv();
    let baseline = thread_count(pid);

    for round in 0..2 {
        viewer.send(&ClientMessage::Play { video: "Video_1".into(), pace: Pace::Native, start: None, plan: None });
        let stream = match viewer.recv() {
            ServerMessage::StreamStart { stream, .. } => stream,
            other => panic!("expected a stream start, got {other:?}"),
        };
        assert_eq!(viewer.read_frame().kind, FrameKind::Video);
        // The streaming thread, and the decoder threads OpenCV starts for it.
        assert!(thread_count(pid) > baseline, "no streaming thread while streaming");
        if round == 0 {
            viewer.send(&ClientMessage::Stop { stream });
            let mut frames = 0;
            loop {
                let frame = viewer.read_frame();
                if frame.kind == FrameKind::Video {
                    frames += 1;
                    continue;
                }
                match ciphercast::shared::message::decode::<ServerMessage>(&frame).unwrap() {
                    ServerMessage::StreamEnd { reason, frames: sent, .. } => {
                        assert_eq!(reason, EndReason::Stopped);
                        assert!(sent < 200 && frames < 200);
                        break;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            wait_for_threads(pid, baseline);
        }
    }
    // Vanish mid-stream: the streaming thread ends, and so do the viewer's handler and writer.
    drop(viewer);
    wait_for_threads(pid, baseline - 2);
    let (mut after, _) = TestClient::join(address, "after", identity(1));
    after.send(&ClientMessage::ListVideos);
    assert!(matches!(after.recv(), ServerMessage::VideoList { .. }));
    server.child.kill().unwrap();
}

/// The client binary as "viewer", with `--display none` and `extra` options.
fn headless_viewer(server: &TestServer, extra: &[&str]) -> Process {
    let address = server.addr.to_string();
    let mut args = vec!["client", "--server", &address, "--name", "viewer", "--display", "none"];
    args.extend_from_slice(extra);
    Process::start(&args)
}

#[test]
fn chat_and_joins_reach_a_viewer_mid_stream_before_its_summary() {
    let videos = clips(20);
    let server = server_with(videos);
    // --trace: a line on stderr for each frame the viewer receives.
    let mut viewer = headless_viewer(&server, &["--trace"]);
    viewer.wait_for(Stream::Out, "online: nobody else yet");
    viewer.type_text("2\n");
    viewer.wait_for(Stream::Out, "  2. Video_2 (24p, 48p, 96p)");
    viewer.type_text("Video_2\n");
    // Once the first picture has arrived, dave joins and writes while it plays.
    viewer.wait_for(Stream::Err, " stream=1 seq=0 ");
    let (mut dave, welcome) = TestClient::hello(server.addr, "dave", identity(3).public_pem());
    let ServerMessage::Welcome { peers, .. } = welcome else { panic!("dave was not welcomed: {welcome:?}") };
    let viewer_pem = &peers.iter().find(|p| &*p.name == "viewer").expect("viewer online").public_key;
    let viewer_key = ciphercast::shared::crypto::PeerKey::from_pem(viewer_pem).unwrap();
    let envelope = identity(3).seal("dave", "viewer", &viewer_key, "popcorn?").unwrap();
    dave.send(&ClientMessage::Send { envelope });
    viewer.wait_for(Stream::Out, "dave joined");
    viewer.wait_for(Stream::Out, "[dave] popcorn?");

    // Ctrl-C during playback stops the playback only.
    let pid = viewer.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let line = viewer.wait_for(Stream::Out, "summary: video=Video_2 ");
    let summary = Summary::parse(&line);
    assert_eq!(summary.total, 200, "{line}");
    assert!(summary.received > 0 && summary.received < 200, "{line}");
    let position = |text: &str| viewer.stdout.iter().position(|l| l.contains(text)).unwrap();
    assert!(position("[dave] popcorn?") < position("summary:"));
    assert!(position("dave joined") < position("summary:"));
    // Still connected: the menu is back and end of input quits cleanly.
    assert_eq!(viewer.finish(), 0);
    assert!(viewer.stdout.last().unwrap().ends_with("bye"));
}

#[test]
fn the_client_binary_plays_a_video_headless_and_prints_the_summary() {
    let server = server_with(clips(2));
    let mut viewer = headless_viewer(&server, &["--pace", "none"]);
    viewer.type_text("2\n1\n");
    let line = viewer.wait_for(Stream::Out, "summary:");
    let summary = Summary::parse(&line);
    assert_eq!(
        (summary.video.as_str(), summary.received, summary.total, summary.resolutions.as_str()),
        ("Video_1", 20, 20, "24p,48p,96p"),
        "{line}"
    );
    // Every frame was measured: a rate, bytes, and a late count that the
    // first frame cannot be part of (it sets the clock the others are held to).
    assert!(summary.fps > 0.0, "{line}");
    assert!(summary.bytes > 20 * 100, "{line}");
    assert!(summary.late < summary.received, "{line}");
    assert_eq!(viewer.finish(), 0);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ciphercast-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_viewer_that_stops_reading_slows_nobody_else() {
    // 720p frames at quality 95: 200 of them are about 8 MB. The stalled
    // viewer's receive buffer is capped at 64 KiB (left alone, Linux may grow
    // it to tcp_rmem's maximum, 32 MiB on some machines, and hold the whole
    // clip), so with the server's send buffer the sockets hold a few hundred
    // KiB: checked below, the stalled stream must still be unfinished at the end.
    let videos = clips_at(20, &[720]);
    let server = TestServer::start(Config { videos, jpeg_quality: 95, ..Config::default() });
    let (mut stalled, _) = TestClient::join(server.addr, "stalled", identity(0));
    nix::sys::socket::setsockopt(&stalled.stream, nix::sys::socket::sockopt::RcvBuf, &(64 * 1024)).unwrap();
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let (mut carol, _) = TestClient::join(server.addr, "carol", identity(2));
    let (mut dave, _) = TestClient::join(server.addr, "dave", identity(3));
    // The stalled viewer asks for a video, takes its start and first
    // picture, and then reads nothing more: its socket buffers and its
    // video queue fill, and its streaming thread waits.
    stalled.send(&ClientMessage::Play { video: "Video_1".into(), pace: Pace::None, start: None, plan: None });
    let stream = match stalled.recv_until("a stream start", |m| !matches!(m, ServerMessage::PeerJoined { .. })) {
        ServerMessage::StreamStart { stream, .. } => stream,
        other => panic!("expected a stream start, got {other:?}"),
    };
    // (Announcements of the others may still come first: they are batched.)
    next_video_frame(&mut stalled);

    // Meanwhile chat flows: bob's message reaches carol...
    let envelope = identity(1).seal("bob", "carol", &peer_key(identity(2)), "still flowing").unwrap();
    bob.send(&ClientMessage::Send { envelope });
    let ServerMessage::Sealed { from, envelope } =
        carol.recv_until("bob's message", |m| matches!(m, ServerMessage::Sealed { .. }))
    else {
        unreachable!()
    };
    assert_eq!(identity(2).open(&from, &peer_key(identity(1)), &envelope).unwrap(), "still flowing");
    // ...and another viewer watches the same video to the end, every frame,
    // without waiting for the stalled one to be cut off: had its stream
    // waited for the stalled one, the stalled one would have been
    // disconnected (a write that makes no progress for 10 s ends a
    // connection) and dave told so before his stream could end.
    let got = play(&mut dave, "Video_1", Pace::None);
    assert_eq!(got.end, (EndReason::Finished, 200, None));
    assert_eq!(got.frames.len(), 200);
    let stalled_left = |m: &ServerMessage| matches!(m, ServerMessage::PeerLeft { name, .. } if name == "stalled");
    assert!(
        !got.others.iter().any(stalled_left),
        "dave's stream ended only after the stalled viewer was disconnected for not reading"
    );

    // All that while the stalled viewer read nothing, and its stream was
    // held up, not finished: stopped now, it ends short of its last frame.
    stalled.send(&ClientMessage::Stop { stream });
    match stream_end(&mut stalled, stream) {
        Some((EndReason::Stopped, sent)) => assert!(sent < 200, "stopped after all {sent} frames"),
        Some(other) => panic!("the stalled viewer's stream was never held up: it ended {other:?}"),
        None => panic!("the stalled viewer was disconnected before the others were done"),
    }
}

/// Reads until the next video frame (at most 100 control messages before it).
fn next_video_frame(client: &mut TestClient) -> ciphercast::shared::frame::Frame {
    for _ in 0..100 {
        let frame = client.read_frame();
        if frame.kind == FrameKind::Video {
            return frame;
        }
    }
    panic!("{}: no video frame", client.name);
}

/// Reads until `stream` ends; its reason and frame count, or `None` if the
/// server closed the connection first.
fn stream_end(client: &mut TestClient, stream: u32) -> Option<(EndReason, u32)> {
    let deadline = Instant::now() + support::TIMEOUT;
    for _ in 0..100_000 {
        assert!(Instant::now() < deadline, "{}: stream {stream} still going after {:?}", client.name, support::TIMEOUT);
        let frame = match client.try_read_frame() {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return None,
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("{}: expected the end of stream {stream}, got {e}", client.name),
        };
        if frame.kind == FrameKind::Control
            && let ServerMessage::StreamEnd { stream: ended, reason, frames, .. } =
                ciphercast::shared::message::decode(&frame).expect("control message")
            && ended == stream
        {
            return Some((reason, frames));
        }
    }
    panic!("{}: stream {stream} did not end", client.name);
}
