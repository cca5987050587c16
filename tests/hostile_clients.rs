//! A classmate's garbage against the real server binary: random bytes,
//! truncated frames, huge lengths, invalid, ill-typed and deeply nested
//! JSON, join floods and message floods. One test per kind of garbage, each
//! against a server of its own: after it, a normal join and message
//! exchange must still work, and the server's memory must stay bounded.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use ciphercast::shared::frame::{FrameKind, encode_frame};
use ciphercast::shared::message::{ClientMessage, Envelope, RefusalCode, ServerMessage};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use support::{Process, TestClient, fake_envelope, identity, peer_key, wait_until};

/// A server binary (`--max-clients 16`) that has served one exchange, and
/// its resident memory then.
struct Target {
    server: Process,
    address: SocketAddr,
    baseline_kib: u64,
}

impl Target {
    fn start() -> Target {
        let (server, address) = Process::server(&["--max-clients", "16"]);
        still_serving(address, "before");
        let baseline_kib = rss_kib(server.child.id());
        Target { server, address, baseline_kib }
    }

    /// After the garbage: two fresh clients still join and exchange a
    /// message, and the server has not grown by 64 MiB. Stops the server.
    fn survived(mut self) {
        still_serving(self.address, "after");
        let grown = rss_kib(self.server.child.id()).saturating_sub(self.baseline_kib);
        assert!(grown < 64 * 1024, "server memory grew by {grown} KiB");
        self.server.child.kill().unwrap();
        self.server.finish();
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Two fresh clients join and exchange a message: the server still serves.
fn still_serving(address: SocketAddr, when: &str) {
    let (a, b) = (format!("alice-{when}"), format!("bob-{when}"));
    let (mut alice, _) = TestClient::join(address, &a, identity(0));
    let (mut bob, _) = TestClient::join(address, &b, identity(1));
    let envelope = identity(0).seal(&a, &b, &peer_key(identity(1)), "still here").unwrap();
    alice.send(&ClientMessage::Send { envelope });
    let message = bob.recv_until("a sealed message", |m| matches!(m, ServerMessage::Sealed { .. }));
    let ServerMessage::Sealed { from, envelope } = message else { unreachable!() };
    assert_eq!(identity(1).open(&from, &peer_key(identity(0)), &envelope).unwrap(), "still here");
    alice.send(&ClientMessage::Quit);
    bob.send(&ClientMessage::Quit);
    alice.recv_until_closed();
    bob.recv_until_closed();
}

/// The client is still joined: a well-formed request is answered as usual.
fn still_answered(client: &mut TestClient) {
    client.send(&ClientMessage::ListVideos);
    let reply = client.recv();
    assert!(matches!(reply, ServerMessage::VideoList { .. }), "{}: {reply:?}", client.name);
}

/// Connects, writes `bytes` and hangs up.
fn raw(address: SocketAddr, bytes: &[u8]) {
    if let Ok(mut socket) = TcpStream::connect(address) {
        let _ = socket.write_all(bytes);
    }
}

#[test]
fn random_bytes_from_strangers_leave_the_server_serving() {
    let target = Target::start();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..40 {
        let len = rng.random_range(1..20_000);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        raw(target.address, &bytes);
    }
    target.survived();
}

#[test]
fn random_bytes_after_a_join_close_that_connection_only() {
    let target = Target::start();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let (mut noisy, _) = TestClient::join(target.address, "noisy", identity(2));
    let noise: Vec<u8> = (0..5000).map(|_| rng.random()).collect();
    noisy.send_raw(&noise);
    // At most an error saying what was wrong, then the close.
    let rest = noisy.recv_until_closed();
    assert!(rest.iter().all(|m| matches!(m, ServerMessage::Error { .. })) && rest.len() <= 1, "{rest:?}");
    target.survived();
}

#[test]
fn truncated_frames_and_impossible_lengths_leave_the_server_serving() {
    let target = Target::start();
    raw(target.address, &[0, 0, 1, 0, 0, b'{']);
    raw(target.address, &[0, 0]);
    raw(target.address, &[0xff, 0xff, 0xff, 0xff]);
    raw(target.address, &[0, 0, 0, 0]);
    raw(target.address, &[0, 0, 0, 1, 7]);
    target.survived();
}

#[test]
fn invalid_and_ill_typed_json_after_a_join_is_answered_with_errors() {
    let target = Target::start();
    let (mut confused, _) = TestClient::join(target.address, "confused", identity(2));
    for payload in
        [&b"{"[..], b"null", b"\"hello\"", br#"{"type":"send","envelope":7}"#, br#"{"type":"hello","version":"one"}"#]
    {
        confused.send_raw(&encode_frame(FrameKind::Control, payload).unwrap());
        let reply = confused.recv();
        assert!(matches!(reply, ServerMessage::Error { .. }), "{}: {reply:?}", String::from_utf8_lossy(payload));
    }
    still_answered(&mut confused);
    target.survived();
}

#[test]
fn deeply_nested_json_is_answered_with_an_error() {
    let target = Target::start();
    let (mut nester, _) = TestClient::join(target.address, "nester", identity(2));
    let nested = "[".repeat(100_000);
    nester.send_raw(&encode_frame(FrameKind::Control, nested.as_bytes()).unwrap());
    assert!(matches!(nester.recv(), ServerMessage::Error { .. }));
    still_answered(&mut nester);
    target.survived();
}

#[test]
fn a_join_flood_is_turned_away_at_the_door_and_the_server_recovers() {
    let target = Target::start();
    // Far more idle connections than the server lets wait (64 waiting to
    // join): the last ones are turned away at once, each with a refusal
    // that says to come back in a moment.
    let mut flood: Vec<TestClient> = (0..150).map(|_| TestClient::connect(target.address)).collect();
    for client in flood.iter_mut().rev().take(20) {
        match client.recv() {
            ServerMessage::Refused { code: RefusalCode::Busy, .. } => {}
            other => panic!("a connection beyond the limit got {other:?}"),
        }
    }
    drop(flood);
    // Once the server has seen the flood's sockets close (nothing on the
    // wire says when), it admits clients again.
    wait_until("a join after the flood", || {
        match TestClient::hello(target.address, "probe", identity(0).public_pem()) {
            (_, ServerMessage::Welcome { .. }) => true,
            (_, ServerMessage::Refused { code: RefusalCode::Busy | RefusalCode::ServerFull, .. }) => false,
            (_, other) => panic!("unexpected reply {other:?}"),
        }
    });
    target.survived();
}

#[test]
fn a_message_flood_is_relayed_whole_with_bounded_memory() {
    let target = Target::start();
    let (mut flooder, _) = TestClient::join(target.address, "flooder", identity(2));
    let (mut target_client, _) = TestClient::join(target.address, "target", identity(3));
    let envelope = fake_envelope("target", "x".into(), 64 * 1024);
    let reader = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for _ in 0..10_000 {
            if let ServerMessage::Sealed { envelope, .. } = target_client.recv() {
                ids.push(envelope.id);
                if ids.len() == 500 {
                    break;
                }
            }
        }
        ids
    });
    for i in 0..500 {
        flooder.send(&ClientMessage::Send { envelope: Envelope { id: i.to_string(), ..envelope.clone() } });
    }
    let expected: Vec<String> = (0..500).map(|i: i32| i.to_string()).collect();
    assert_eq!(support::join_bounded("the flood's reader", reader), expected, "lost or reordered");
    target.survived();
}
