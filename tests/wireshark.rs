//! The Wireshark dissector (`tools/wireshark/ciphercast.lua`) decodes a real
//! exchange. The test records the bytes its clients exchanged with a real
//! server, writes them as a pcap itself (so no capture privileges are
//! needed), and reads it back with `tshark -X lua_script:…`.

mod support;

use std::process::Command;

use ciphercast::server::Config;
use ciphercast::shared::message::{ClientMessage, ServerMessage};
use ciphercast::shared::video::{Pace, PlanKind};
use support::{TestClient, TestServer, clips, identity, peer_key};

/// A minimal pcap writer: raw IPv4 packets carrying TCP segments.
struct Pcap {
    bytes: Vec<u8>,
}

impl Pcap {
    fn new() -> Pcap {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]); // time zone, accuracy
        bytes.extend_from_slice(&262_144u32.to_le_bytes()); // snapshot length
        bytes.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW: IPv4 without link layer
        Pcap { bytes }
    }

    fn segment(
        &mut self,
        time: u32,
        (src, dst): ([u8; 4], [u8; 4]),
        (sport, dport): (u16, u16),
        (seq, ack, flags): (u32, u32, u8),
        data: &[u8],
    ) {
        let total = 20 + 20 + data.len();
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let checksum = !ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).fold(0u32, |a, b| {
            let s = a + b;
            (s & 0xffff) + (s >> 16)
        }) as u16;
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut tcp = Vec::with_capacity(20);
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        self.bytes.extend_from_slice(&time.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        self.bytes.extend_from_slice(&(total as u32).to_le_bytes());
        self.bytes.extend_from_slice(&(total as u32).to_le_bytes());
        self.bytes.extend_from_slice(&ip);
        self.bytes.extend_from_slice(&tcp);
        self.bytes.extend_from_slice(data);
    }

    /// One TCP connection: handshake, then everything the client sent, then
    /// everything it received, in segments of at most 1400 bytes.
    fn connection(&mut self, client_port: u16, sent: &[u8], received: &[u8]) {
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        const PSH_ACK: u8 = 0x18;
        let (client, server) = ([10, 0, 0, 2], [10, 0, 0, 1]);
        let (mut c_seq, mut s_seq) = (1000u32, 5000u32);
        self.segment(1, (client, server), (client_port, 8005), (c_seq, 0, SYN), &[]);
        self.segment(1, (server, client), (8005, client_port), (s_seq, c_seq + 1, SYN | ACK), &[]);
        c_seq += 1;
        s_seq += 1;
        self.segment(1, (client, server), (client_port, 8005), (c_seq, s_seq, ACK), &[]);
        for chunk in sent.chunks(1400) {
            self.segment(2, (client, server), (client_port, 8005), (c_seq, s_seq, PSH_ACK), chunk);
            c_seq += chunk.len() as u32;
        }
        for chunk in received.chunks(1400) {
            self.segment(3, (server, client), (8005, client_port), (s_seq, c_seq, PSH_ACK), chunk);
            s_seq += chunk.len() as u32;
        }
    }
}

#[test]
fn the_dissector_decodes_a_recorded_exchange() {
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tshark is missing: `make deps` installs it");
        eprintln!("skipped: tshark is not installed (`make deps` installs it)");
        return;
    }
    // A real exchange: two joins, a sealed message, a short video.
    let server = TestServer::start(Config { videos: clips(7), ..Config::default() });
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    alice.recv_until("bob joined", |m| matches!(m, ServerMessage::PeerJoined { .. }));
    let envelope = identity(0).seal("alice", "bob", &peer_key(identity(1)), "not in the capture").unwrap();
    alice.send(&ClientMessage::Send { envelope });
    bob.recv_until("the message", |m| matches!(m, ServerMessage::Sealed { .. }));
    // With the adaptive plan, at the clip's own pace (7 s), so that a seek
    // lands while it plays (after the first picture, to frame 8) and the
    // plan climbs from 24p through 48p to 96p (two seconds after the seek
    // each), every switch announced.
    let play = ClientMessage::Play {
        video: "Video_1".into(),
        pace: Pace::Native,
        start: None,
        plan: Some(PlanKind::Adaptive),
    };
    bob.send(&play);
    let mut seek_sent = false;
    for _ in 0..10_000 {
        let frame = bob.read_frame();
        if frame.kind == ciphercast::shared::frame::FrameKind::Video {
            if !seek_sent {
                bob.send(&ClientMessage::Seek { stream: 1, frame: 8 });
                seek_sent = true;
            }
        } else if matches!(ciphercast::shared::message::decode(&frame), Ok(ServerMessage::StreamEnd { .. })) {
            break;
        }
    }

    let mut pcap = Pcap::new();
    for (port, client) in [(40001, &alice), (40002, &bob)] {
        let (sent, received) = (client.sent.lock().unwrap().clone(), client.received.lock().unwrap().clone());
        pcap.connection(port, &sent, &received);
    }
    let path = std::env::temp_dir().join(format!("ciphercast-{}.pcap", std::process::id()));
    std::fs::write(&path, &pcap.bytes).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/wireshark/ciphercast.lua");
    let tshark = || {
        let mut command = Command::new("tshark");
        command.args(["-r", path.to_str().unwrap(), "-X", &format!("lua_script:{script}"), "-Y", "ciphercast"]);
        command
    };
    let info = tshark().args(["-T", "fields", "-e", "_ws.col.Info"]).output().expect("run tshark");
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let output = tshark()
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args([
            "-e",
            "ciphercast.type",
            "-e",
            "ciphercast.from",
            "-e",
            "ciphercast.to",
            "-e",
            "ciphercast.video.resolution",
        ])
        .args(["-e", "ciphercast.video.sequence"])
        .output()
        .expect("run tshark");
    let _ = std::fs::remove_file(&path);
    let fields = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "tshark failed: {}", String::from_utf8_lossy(&output.stderr));
    let all: Vec<&str> = fields.split(['\t', '\n', ',']).filter(|s| !s.is_empty()).collect();
    for wanted in [
        "hello",
        "welcome",
        "peer_joined",
        "send",
        "sealed",
        "play",
        "stream_start",
        "seek",
        "stream_state",
        "stream_end",
        "alice",
        "bob",
    ] {
        assert!(all.contains(&wanted), "tshark did not decode {wanted:?}:\n{fields}");
    }
    for resolution in ["24p", "48p", "96p"] {
        assert!(all.contains(&resolution), "no video frame at {resolution}:\n{fields}");
    }
    assert!(all.contains(&"69"), "the last frame's sequence number is missing:\n{fields}");
    // The info column tells the plan and each switch with its measured rate.
    assert!(info.contains("play Video_1 plan adaptive"), "{info}");
    assert!(info.contains("stream_state playing, next frame 8"), "the seek's answer:\n{info}");
    for resolution in ["48p", "96p"] {
        assert!(info.contains(&format!(" at {resolution} (measured ")), "no switch to {resolution}:\n{info}");
    }
    assert!(!fields.contains("not in the capture"));
}
