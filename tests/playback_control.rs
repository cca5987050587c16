//! Pause, resume and seek, end to end over a real socket: the server's
//! answers (`stream_state`), the frame numbers that follow them, that
//! nothing arrives while paused, and that the picture after a seek is the
//! frame it names.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ciphercast::server::Config;
use ciphercast::shared::frame::{Frame, FrameKind};
use ciphercast::shared::message::{ClientMessage, ServerMessage, decode};
use ciphercast::shared::video::{EndReason, FrameHeader, Pace, PlanPart, PlayState};
use support::{Stream, TestClient, TestServer, clips_at, identity};

/// What a viewer reads: a picture (its header and JPEG) or a control message.
enum Item {
    Picture(FrameHeader, Vec<u8>),
    Control(ServerMessage),
}

fn read(client: &mut TestClient) -> Item {
    let frame: Frame = client.read_frame();
    if frame.kind == FrameKind::Video {
        let (header, jpeg) = FrameHeader::decode(&frame.payload).expect("frame header");
        return Item::Picture(header, jpeg.to_vec());
    }
    Item::Control(decode::<ServerMessage>(&frame).expect("control message"))
}

/// A viewer of `video`, after its stream's start: the stream id and the plan.
fn viewer(server: &TestServer, name: &str, video: &str) -> (TestClient, u32, Vec<PlanPart>) {
    let (mut client, _) = TestClient::join(server.addr, name, identity(0));
    client.send(&ClientMessage::Play { video: video.into(), pace: Pace::Native, start: None, plan: None });
    for _ in 0..100 {
        if let Item::Control(ServerMessage::StreamStart { stream, plan, .. }) = read(&mut client) {
            return (client, stream, plan);
        }
    }
    panic!("no stream start");
}

/// Reads pictures until the answer to a command; the pictures' numbers
/// before it, and the answer's state and next frame.
fn until_state(client: &mut TestClient) -> (Vec<u32>, PlayState, u32) {
    let mut before = Vec::new();
    for _ in 0..1000 {
        match read(client) {
            Item::Picture(header, _) => before.push(header.sequence),
            Item::Control(ServerMessage::StreamState { state, next_frame, .. }) => return (before, state, next_frame),
            Item::Control(other) => panic!("expected a stream_state, got {other:?}"),
        }
    }
    panic!("no stream_state");
}

/// The next picture, skipping nothing: panics on a control message.
fn next_picture(client: &mut TestClient) -> (FrameHeader, Vec<u8>) {
    match read(client) {
        Item::Picture(header, jpeg) => (header, jpeg),
        Item::Control(other) => panic!("expected a picture, got {other:?}"),
    }
}

/// Reads to the stream's end; the pictures' numbers on the way.
fn to_the_end(client: &mut TestClient) -> Vec<u32> {
    let mut numbers = Vec::new();
    for _ in 0..10_000 {
        match read(client) {
            Item::Picture(header, _) => numbers.push(header.sequence),
            Item::Control(ServerMessage::StreamEnd { reason, .. }) => {
                assert_eq!(reason, EndReason::Finished);
                return numbers;
            }
            Item::Control(other) => panic!("unexpected {other:?}"),
        }
    }
    panic!("no stream end");
}

#[test]
fn nothing_arrives_while_paused_and_resume_goes_on_from_the_next_frame() {
    let server = TestServer::start(Config { videos: clips_at(3, &[240, 360]), ..Config::default() });
    let (mut client, stream, _) = viewer(&server, "pauser", "Video_2");
    let mut seen: Vec<u32> = (0..4).map(|_| next_picture(&mut client).0.sequence).collect();

    client.send(&ClientMessage::Pause { stream });
    let (before, state, next) = until_state(&mut client);
    seen.extend(before);
    assert_eq!(state, PlayState::Paused);
    assert_eq!(next, seen.last().unwrap() + 1, "the answer names the first frame not sent");

    // A second with the stream paused: not a byte arrives.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!client.has_pending(), "something arrived while paused");

    client.send(&ClientMessage::Resume { stream });
    let (before, state, resumed_at) = until_state(&mut client);
    assert!(before.is_empty() && state == PlayState::Playing && resumed_at == next);
    let rest = to_the_end(&mut client);
    assert_eq!(rest.first(), Some(&next), "the first picture after the answer is the frame it named");
    seen.extend(rest);
    let all: Vec<u32> = (0..seen.len() as u32).collect();
    assert_eq!(seen, all, "every frame once, in order: none lost to the pause, none doubled");
}

#[test]
fn a_seek_goes_on_from_the_frame_asked_for_with_its_picture_and_resolution() {
    let videos = clips_at(3, &[240, 360]);
    // The pictures of a whole playback, by frame number, as the reference.
    let reference_server = TestServer::start(Config { videos: videos.clone(), ..Config::default() });
    let (mut reference, _, plan) = viewer(&reference_server, "reference", "Video_2");
    let mut pictures: HashMap<u32, Vec<u8>> = HashMap::new();
    for _ in 0..10_000 {
        match read(&mut reference) {
            Item::Picture(header, jpeg) => {
                pictures.insert(header.sequence, jpeg);
            }
            Item::Control(ServerMessage::StreamEnd { .. }) => break,
            Item::Control(other) => panic!("unexpected {other:?}"),
        }
    }
    let resolution_of =
        |frame: u32| plan.iter().find(|p| (p.first..=p.last).contains(&frame)).unwrap().resolution.clone();

    // Another server that decodes every frame it sends: no cache, no store.
    let server = TestServer::start(Config { videos, cache_mb: 0, store: None, ..Config::default() });
    let (mut client, stream, _) = viewer(&server, "seeker", "Video_2");
    next_picture(&mut client);
    let last = plan.last().unwrap().last;
    for target in [last - 3, 2] {
        client.send(&ClientMessage::Seek { stream, frame: target });
        let (_, state, next) = until_state(&mut client);
        assert_eq!((state, next), (PlayState::Playing, target));
        let (header, jpeg) = next_picture(&mut client);
        assert_eq!(header.sequence, next, "the first picture after the answer");
        assert_eq!(header.resolution, resolution_of(next), "the plan's resolution at the new position");
        assert!(jpeg == pictures[&next], "frame {next}'s picture, not another's");
    }
    // Seeking while paused keeps it paused; past the end is the last frame,
    // and the stream ends after it.
    client.send(&ClientMessage::Pause { stream });
    assert_eq!(until_state(&mut client).1, PlayState::Paused);
    client.send(&ClientMessage::Seek { stream, frame: last + 100 });
    let (before, state, next) = until_state(&mut client);
    assert!(before.is_empty() && state == PlayState::Paused && next == last);
    client.send(&ClientMessage::Resume { stream });
    until_state(&mut client);
    assert_eq!(to_the_end(&mut client), vec![last]);
}

#[test]
fn a_paused_stream_stops_at_once_and_commands_for_no_stream_get_an_error() {
    let server = TestServer::start(Config { videos: clips_at(3, &[240]), ..Config::default() });
    let (mut client, stream, _) = viewer(&server, "stopper", "Video_1");
    client.send(&ClientMessage::Pause { stream });
    until_state(&mut client);
    // The stream's thread is blocked on its commands: the stop must wake it.
    client.send(&ClientMessage::Stop { stream });
    match read(&mut client) {
        Item::Control(ServerMessage::StreamEnd { reason, .. }) => assert_eq!(reason, EndReason::Stopped),
        Item::Picture(header, _) => panic!("frame {} arrived after the pause", header.sequence),
        Item::Control(other) => panic!("expected the end, got {other:?}"),
    }
    client.send(&ClientMessage::Resume { stream });
    match read(&mut client) {
        Item::Control(ServerMessage::Error { message }) => assert!(message.contains("no stream"), "{message}"),
        _ => panic!("expected an error"),
    }
}

/// The number after `key=` in a trace line.
fn field(line: &str, key: &str) -> u32 {
    let value = line.split(&format!("{key}=")).nth(1).and_then(|rest| rest.split_whitespace().next());
    value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[test]
fn the_headless_client_steers_from_piped_lines_and_keeps_the_others_for_the_menu() {
    // 100 frames at 10 fps: time to pause, resume and seek 5 s (50 frames).
    let server = TestServer::start(Config { videos: clips_at(10, &[240, 360]), ..Config::default() });
    let address = server.addr.to_string();
    let args = ["client", "--server", &address, "--name", "steerer", "--display", "none", "--trace", "--ephemeral"];
    let mut viewer = support::Process::start(&args);
    viewer.wait_for(Stream::Out, "online:");
    viewer.type_text("2\nVideo_2\n");
    viewer.wait_for(Stream::Err, "seq=3 ");

    viewer.type_text("p\n");
    let paused = viewer.wait_for_next(Stream::Err, "stream_state");
    assert!(paused.contains("state=paused"), "{paused}");
    let next = field(&paused, "next_frame");
    let paused_at = viewer.stderr.len();
    std::thread::sleep(Duration::from_secs(1));
    viewer.type_text("p\n");
    let resumed = viewer.wait_for_next(Stream::Err, "stream_state");
    assert!(resumed.contains("state=playing") && field(&resumed, "next_frame") == next, "{resumed}");
    let meanwhile = &viewer.stderr[paused_at..viewer.stderr.len() - 1];
    assert!(!meanwhile.iter().any(|l| l.contains(" video ")), "frames arrived while paused: {meanwhile:#?}");
    let first = viewer.wait_for_next(Stream::Err, " video ");
    assert_eq!(field(&first, "seq"), next, "resumed from the frame the answer named");

    // `>`: 5 s forward, from the frame the viewer is at.
    viewer.type_text(">\n");
    let seek = viewer.wait_for_next(Stream::Err, "seek stream=");
    let target = field(&seek, "frame");
    assert!(target >= next + 50, "{seek}");
    let answer = viewer.wait_for_next(Stream::Err, "stream_state");
    assert_eq!(field(&answer, "next_frame"), target, "{answer}");
    assert_eq!(field(&viewer.wait_for_next(Stream::Err, " video "), "seq"), target);

    // Not a playback command: it waits for the menu, which quits after the summary.
    viewer.type_text("3\n");
    let summary = support::Summary::parse(&viewer.wait_for(Stream::Out, "summary: video=Video_2"));
    assert!(summary.received < summary.total, "the seek skipped frames: {}/{}", summary.received, summary.total);
    viewer.wait_for(Stream::Out, "bye");
    assert_eq!(viewer.finish(), 0);
}
