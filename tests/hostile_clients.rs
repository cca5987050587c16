//! A classmate's garbage against the real server binary: random bytes,
//! truncated frames, huge lengths, invalid and ill-typed JSON, joins that
//! never finish, join floods and message floods. After each, a normal join
//! and message exchange must still work, and the server's memory must stay
//! bounded.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use ciphercast::shared::frame::{FrameKind, encode_frame};
use ciphercast::shared::message::{ClientMessage, Envelope, RefusalCode, ServerMessage};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use support::{Process, TestClient, fake_envelope, identity, peer_key};

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
fn still_serving(address: SocketAddr, round: usize) {
    let (a, b) = (format!("alice{round}"), format!("bob{round}"));
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

fn raw(address: SocketAddr, bytes: &[u8]) {
    if let Ok(mut socket) = TcpStream::connect(address) {
        let _ = socket.write_all(bytes);
    }
}

#[test]
fn garbage_of_every_kind_leaves_the_server_serving_with_bounded_memory() {
    let (mut server, address) = Process::server(&["--max-clients", "16"]);
    let pid = server.child.id();
    still_serving(address, 0);
    let baseline = rss_kib(pid);
    let mut rng = StdRng::seed_from_u64(0x5eed);

    // Random bytes, from strangers and from a joined client.
    for _ in 0..40 {
        let len = rng.random_range(1..20_000);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        raw(address, &bytes);
    }
    let (mut joined, _) = TestClient::join(address, "noisy", identity(2));
    let noise: Vec<u8> = (0..5000).map(|_| rng.random()).collect();
    joined.send_raw(&noise);
    assert!(joined.recv_until_closed().len() <= 1, "garbage after a join closes that connection");
    still_serving(address, 1);

    // Truncated frames and impossible lengths.
    raw(address, &[0, 0, 1, 0, 0, b'{']);
    raw(address, &[0, 0]);
    raw(address, &[0xff, 0xff, 0xff, 0xff]);
    raw(address, &[0, 0, 0, 0]);
    raw(address, &[0, 0, 0, 1, 7]);
    still_serving(address, 2);

    // Invalid JSON and valid JSON of the wrong shape, after joining.
    let (mut confused, _) = TestClient::join(address, "confused", identity(2));
    for payload in
        [&b"{"[..], b"null", b"\"hello\"", br#"{"type":"send","envelope":7}"#, br#"{"type":"hello","version":"one"}"#]
    {
        confused.send_raw(&encode_frame(FrameKind::Control, payload).unwrap());
        assert!(matches!(confused.recv(), ServerMessage::Error { .. }));
    }
    let nested = "[".repeat(100_000);
    confused.send_raw(&encode_frame(FrameKind::Control, nested.as_bytes()).unwrap());
    assert!(matches!(confused.recv(), ServerMessage::Error { .. }));
    still_serving(address, 3);

    // A join flood: far more idle connections than the server admits.
    let flood: Vec<TestClient> = (0..150).map(|_| TestClient::connect(address)).collect();
    let mut turned_away = 0;
    for mut client in flood.into_iter().rev().take(20) {
        client.stream.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
        if let Ok(ServerMessage::Refused { code: RefusalCode::ServerFull, .. }) = client.try_recv() {
            turned_away += 1;
        }
    }
    assert!(turned_away > 0, "a flood beyond the limit is turned away at the door");
    // The flood's sockets are closed now; once the server has noticed (a
    // moment), it admits clients again.
    let mut admitted = false;
    for _ in 0..100 {
        match TestClient::hello(address, "probe", identity(0).public_pem()) {
            (_, ServerMessage::Welcome { .. }) => {
                admitted = true;
                break;
            }
            (_, ServerMessage::Refused { code: RefusalCode::ServerFull, .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            (_, other) => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(admitted, "the server never recovered from the join flood");
    still_serving(address, 4);

    // A message flood: large envelopes as fast as the socket takes them.
    let (mut flooder, _) = TestClient::join(address, "flooder", identity(2));
    let (mut target, _) = TestClient::join(address, "target", identity(3));
    let envelope = fake_envelope("target", "x".into(), 64 * 1024);
    let reader = std::thread::spawn(move || {
        let mut got = 0;
        while got < 500 {
            if let ServerMessage::Sealed { .. } = target.recv() {
                got += 1;
            }
        }
        got
    });
    for i in 0..500 {
        flooder.send(&ClientMessage::Send { envelope: Envelope { id: i.to_string(), ..envelope.clone() } });
    }
    assert_eq!(reader.join().unwrap(), 500);
    still_serving(address, 5);

    let grown = rss_kib(pid).saturating_sub(baseline);
    assert!(grown < 64 * 1024, "server memory grew by {grown} KiB");
    server.child.kill().unwrap();
}
