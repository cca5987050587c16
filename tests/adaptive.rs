//! The adaptive plan, end to end over real sockets: a viewer that reads as
//! fast as the server sends climbs from the lowest resolution to the top,
//! one step per two seconds, each switch announced; a viewer on a slow link
//! (the real client with `--max-kbps`) steps down, stays down for the
//! back-off, and ends below the top. The tests check outcomes — frame
//! numbers, resolutions, counts — never timings; the outcomes do assume a
//! machine that keeps up with tiny 10 fps clips (the server's own delays
//! are not taken for a slow link, but a client starved of the CPU for a
//! fraction of a second is one).

mod support;

use ciphercast::server::Config;
use ciphercast::shared::frame::FrameKind;
use ciphercast::shared::message::{ClientMessage, ServerMessage, decode};
use ciphercast::shared::video::{FrameHeader, Pace, PlanKind, PlayState};
use support::{Process, Stream, Summary, TestClient, TestServer, clips_at, identity};

#[test]
fn an_unhindered_viewer_climbs_one_step_every_two_seconds_each_switch_announced() {
    // 8 s at 10 fps: 80 frames, one-second segments of 10.
    let server = TestServer::start(Config { videos: clips_at(8, &[24, 48, 96]), ..Config::default() });
    let (mut client, _) = TestClient::join(server.addr, "climber", identity(0));
    let play = ClientMessage::Play {
        video: "Video_2".into(),
        pace: Pace::Native,
        start: None,
        plan: Some(PlanKind::Adaptive),
    };
    client.send(&play);
    let mut frames: Vec<(u32, String)> = Vec::new();
    // Each announced switch: the frame it applies from, and the resolution.
    let mut switches: Vec<(u32, String)> = Vec::new();
    for _ in 0..1000 {
        let frame = client.read_frame();
        if frame.kind == FrameKind::Video {
            let (header, _) = FrameHeader::decode(&frame.payload).unwrap();
            frames.push((header.sequence, header.resolution));
            continue;
        }
        match decode::<ServerMessage>(&frame).unwrap() {
            ServerMessage::StreamStart { plan, renditions, frames: count, .. } => {
                assert!(plan.is_empty(), "the adaptive plan has no fixed parts: {plan:?}");
                assert_eq!(renditions, ["24p", "48p", "96p"]);
                assert_eq!(count, 80);
            }
            ServerMessage::StreamState { state, next_frame, resolution: Some(resolution), measured_kbps, .. } => {
                assert_eq!(state, PlayState::Playing);
                assert!(measured_kbps.is_some_and(|kbps| kbps > 0), "a switch says what was measured");
                switches.push((next_frame, resolution));
            }
            ServerMessage::StreamEnd { frames: sent, .. } => {
                assert_eq!(sent, 80);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let numbers: Vec<u32> = frames.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (0..80).collect::<Vec<_>>(), "every frame once, in order");
    // Up one step after two calm segments, each switch from the frame it names.
    assert_eq!(switches, [(20, "48p".to_string()), (40, "96p".to_string())]);
    for (n, resolution) in &frames {
        let expected = match n {
            0..20 => "24p",
            20..40 => "48p",
            _ => "96p",
        };
        assert_eq!(resolution, expected, "frame {n}");
    }
}

#[test]
fn a_viewer_on_a_slow_link_steps_down_and_backs_off_before_trying_again() {
    // 12 s at 10 fps. Their rates here: 96p ≈ 0.2, 240p ≈ 0.7, 720p ≈ 2.2
    // Mbit/s; the link carries 1.2. 720p is tried at 4 s, left, and not
    // tried again for 8 s: after the end.
    let server = TestServer::start(Config { videos: clips_at(12, &[96, 240, 720]), ..Config::default() });
    let address = server.addr.to_string();
    let args = [
        "client",
        "--server",
        &address,
        "--name",
        "slow",
        "--ephemeral",
        "--display",
        "none",
        "--plan",
        "adaptive",
        "--max-kbps",
        "1200",
        "--trace",
    ];
    let mut viewer = Process::start(&args);
    viewer.wait_for(Stream::Out, "online:");
    viewer.type_text("2\nVideo_2\n");
    let summary = Summary::parse(&viewer.wait_for(Stream::Out, "summary:"));
    viewer.type_text("3\n");
    assert_eq!(viewer.finish(), 0);

    // (A step down may, rarely, lose the one picture the writer was taking
    // as the stream took the others back: PROTOCOL.md, stream_state.)
    assert_eq!(summary.total, 120);
    assert!(summary.received + 1 >= 120, "frames lost: {}/120", summary.received);
    assert!(summary.received <= 120, "frames sent twice: {}/120", summary.received);
    assert_eq!(summary.last.as_deref(), Some("240p"), "the link carries 240p, not 720p: {}", summary.resolutions);
    let counts: Vec<(String, u32)> = summary
        .resolutions
        .split(',')
        .map(|field| {
            let (label, count) = field.split_once(':').expect("resolution:count with the adaptive plan");
            (label.to_string(), count.parse().unwrap())
        })
        .collect();
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u32>(), summary.received, "counts cover every frame: {counts:?}");
    assert_eq!(counts[0].0, "96p", "it starts at the lowest");

    let switches: Vec<(u32, String)> = viewer
        .stderr
        .iter()
        .filter(|line| line.contains("stream_state") && line.contains("resolution="))
        .map(|line| {
            assert!(line.contains("measured_kbps="), "{line}");
            let value =
                |key: &str| line.split(&format!("{key}=")).nth(1).unwrap().split(' ').next().unwrap().to_string();
            (value("next_frame").parse().unwrap(), value("resolution"))
        })
        .collect();
    // Up at 2 s and 4 s; down from 720p at once; then the back-off keeps it
    // from trying 720p again every two seconds.
    let resolutions: Vec<&str> = switches.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(resolutions, ["240p", "720p", "240p"], "{switches:?}");
    assert_eq!((switches[0].0, switches[1].0), (20, 40), "{switches:?}");
}
