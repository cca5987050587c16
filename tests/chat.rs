//! The chat system end to end: a real server on 127.0.0.1, raw protocol
//! clients on real sockets.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ciphercast::server::{Config, RelayMode};
use ciphercast::shared::connection::RecvError;
use ciphercast::shared::crypto::CryptoError;
use ciphercast::shared::frame::{FrameError, FrameKind};
use ciphercast::shared::limits::MAX_CIPHERTEXT_BYTES;
use ciphercast::shared::message::{ClientMessage, Envelope, LeaveReason, RefusalCode, ServerMessage};
use support::{TestClient, TestServer, fake_envelope, identity, peer_key, wait_until};

fn joined_name(message: &ServerMessage) -> Option<&str> {
    match message {
        ServerMessage::PeerJoined { name, .. } => Some(name),
        _ => None,
    }
}

/// Reads `client`'s messages until it hears that `name` joined.
fn hears_join(client: &mut TestClient, name: &str) {
    client.recv_until(&format!("{name} joined"), |m| joined_name(m) == Some(name));
}

fn sealed(message: ServerMessage) -> (String, Envelope) {
    match message {
        ServerMessage::Sealed { from, envelope } => (from, envelope),
        other => panic!("expected a sealed message, got {other:?}"),
    }
}

#[test]
fn three_clients_join_and_each_ends_with_every_key() {
    let server = TestServer::with_defaults();
    let (mut alice, alice_saw) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, bob_saw) = TestClient::join(server.addr, "bob", identity(1));
    let (_carol, carol_saw) = TestClient::join(server.addr, "carol", identity(2));
    assert!(alice_saw.is_empty());
    assert_eq!(bob_saw, ["alice"]);
    // The newcomer's welcome is the whole registry: its `online:` list.
    assert_eq!(carol_saw, ["alice", "bob"]);

    // The others hear of each newcomer, in order, with its exact key.
    let expected = [(&mut alice, vec![("bob", 1), ("carol", 2)]), (&mut bob, vec![("carol", 2)])];
    for (client, newcomers) in expected {
        for (want, who) in newcomers {
            let ServerMessage::PeerJoined { name, public_key } = client.recv() else {
                panic!("{}: expected {want} joined", client.name)
            };
            assert_eq!(&*name, want);
            let announced = ciphercast::shared::crypto::PeerKey::from_pem(&public_key).unwrap();
            assert_eq!(announced.fingerprint(), peer_key(identity(who)).fingerprint());
        }
    }
}

#[test]
fn a_long_message_reaches_the_addressee_and_nobody_else_can_read_it() {
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let (mut carol, _) = TestClient::join(server.addr, "carol", identity(2));
    hears_join(&mut alice, "bob");
    hears_join(&mut alice, "carol");

    let text: String = "Grüße, 世界! ✓ — ünïcödé ".chars().cycle().take(8000).collect();
    assert!(text.len() >= 10_000);
    let envelope = identity(0).seal("alice", "bob", &peer_key(identity(1)), &text).unwrap();
    alice.send(&ClientMessage::Send { envelope });

    let (from, envelope) = sealed(bob.recv_until("a sealed message", |m| matches!(m, ServerMessage::Sealed { .. })));
    assert_eq!(from, "alice");
    assert_eq!(identity(1).open(&from, &peer_key(identity(0)), &envelope).unwrap(), text);

    // Broadcast relay: carol receives the same envelope and cannot open it.
    let (from, for_bob) = sealed(carol.recv_until("a sealed message", |m| matches!(m, ServerMessage::Sealed { .. })));
    assert_eq!((from.as_str(), for_bob.to.as_str()), ("alice", "bob"));
    assert!(matches!(identity(2).open(&from, &peer_key(identity(0)), &for_bob), Err(CryptoError::Undecryptable)));

    // Not one byte the server sent or received holds the plaintext.
    let needle = &text.as_bytes()[..24];
    for client in [&alice, &bob, &carol] {
        for log in [&client.sent, &client.received] {
            let bytes = log.lock().unwrap();
            assert!(!bytes.is_empty());
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{} saw plaintext on the wire", client.name);
        }
    }
}

#[test]
fn direct_relay_reaches_the_addressee_only() {
    let server = TestServer::start(Config { relay: RelayMode::Direct, ..Config::default() });
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let (mut carol, _) = TestClient::join(server.addr, "carol", identity(2));
    hears_join(&mut alice, "carol");
    hears_join(&mut bob, "carol");

    let to_bob = identity(0).seal("alice", "bob", &peer_key(identity(1)), "for bob").unwrap();
    let to_carol = identity(0).seal("alice", "carol", &peer_key(identity(2)), "for carol").unwrap();
    alice.send(&ClientMessage::Send { envelope: to_bob });
    alice.send(&ClientMessage::Send { envelope: to_carol });
    // The server relays alice's messages in order, so had carol been sent the
    // first, she would read it before the second.
    let (_, first) = sealed(carol.recv());
    assert_eq!(first.to, "carol");
    let (_, got) = sealed(bob.recv());
    assert_eq!(got.to, "bob");
}

#[test]
fn quit_and_abrupt_disconnect_both_notify_and_free_the_name() {
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let (carol, _) = TestClient::join(server.addr, "carol", identity(2));

    bob.send(&ClientMessage::Quit);
    let rest = bob.recv_until_closed();
    assert!(rest.contains(&ServerMessage::Goodbye), "bob got {rest:?}");
    let left = alice.recv_until("bob left", |m| matches!(m, ServerMessage::PeerLeft { .. }));
    assert_eq!(left, ServerMessage::PeerLeft { name: "bob".into(), reason: LeaveReason::Quit });

    drop(carol); // no quit: the socket just closes
    let left = alice.recv_until("carol left", |m| matches!(m, ServerMessage::PeerLeft { .. }));
    assert_eq!(left, ServerMessage::PeerLeft { name: "carol".into(), reason: LeaveReason::Disconnected });

    // Both names are free again.
    let (_bob, peers) = TestClient::join(server.addr, "bob", identity(3));
    assert_eq!(peers, ["alice"]);
    let (_carol, peers) = TestClient::join(server.addr, "carol", identity(4));
    assert_eq!(peers, ["alice", "bob"]);
}

#[test]
fn bad_joins_are_refused_with_their_reasons() {
    let server = TestServer::with_defaults();
    let (_bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let key = identity(0).public_pem();
    let small_key = {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let small = rsa::PrivateKey::new(&mut rand::rng(), 1024).unwrap();
        small.to_public_key().to_public_key_pem(LineEnding::LF).unwrap()
    };
    let long_name = "x".repeat(33);
    let cases: [(&str, &str, RefusalCode, &str); 6] = [
        ("bob", key, RefusalCode::NameTaken, "name \"bob\" is taken"),
        ("", key, RefusalCode::InvalidName, "must not be empty"),
        ("bo\u{1b}[2Jb", key, RefusalCode::InvalidName, "control or format characters"),
        (&long_name, key, RefusalCode::InvalidName, "at most 32 characters, got 33"),
        ("dave", &small_key, RefusalCode::BadKey, "1024 bits"),
        ("erin", "not a key", RefusalCode::BadKey, "not an RSA public key"),
    ];
    for (name, public_key, code, words) in cases {
        let (mut client, reply) = TestClient::hello(server.addr, name, public_key);
        match reply {
            ServerMessage::Refused { code: got, reason } => {
                assert_eq!(got, code, "{name:?}: {reason}");
                assert!(reason.contains(words), "{name:?}: reason {reason:?} lacks {words:?}");
            }
            other => panic!("{name:?} was not refused: {other:?}"),
        }
        // A refusal closes the connection.
        assert!(client.recv_until_closed().is_empty());
    }
}

#[test]
fn a_wrong_protocol_version_or_a_first_message_that_is_not_a_hello_is_refused() {
    let server = TestServer::with_defaults();
    let mut client = TestClient::connect(server.addr);
    client.send(&ClientMessage::Hello { version: 99, name: "x".into(), public_key: identity(0).public_pem().into() });
    assert!(matches!(client.recv(), ServerMessage::Refused { code: RefusalCode::Version, .. }));
    let mut client = TestClient::connect(server.addr);
    client.send(&ClientMessage::Quit);
    assert!(matches!(client.recv(), ServerMessage::Refused { code: RefusalCode::Protocol, .. }));
}

#[test]
fn a_four_gigabyte_header_is_refused_while_the_server_keeps_serving() {
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));

    // Before joining: refused, closed.
    let mut stranger = TestClient::connect(server.addr);
    stranger.send_raw(&[0xff, 0xff, 0xff, 0xff]);
    match stranger.recv() {
        ServerMessage::Refused { code: RefusalCode::Protocol, reason } => {
            assert!(reason.contains("4294967295"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(stranger.recv_until_closed().is_empty());

    // After joining: an error, the connection closed, the others told.
    let (mut mallory, _) = TestClient::join(server.addr, "mallory", identity(3));
    mallory.send_raw(&[0xff, 0xff, 0xff, 0xff, 0]);
    let rest = mallory.recv_until_closed();
    assert!(
        rest.iter().any(|m| matches!(m, ServerMessage::Error { message } if message.contains("exceeds the limit"))),
        "{rest:?}"
    );
    let left = alice.recv_until("mallory left", |m| matches!(m, ServerMessage::PeerLeft { .. }));
    assert_eq!(left, ServerMessage::PeerLeft { name: "mallory".into(), reason: LeaveReason::Disconnected });

    // Everyone else carries on.
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let envelope = identity(0).seal("alice", "bob", &peer_key(identity(1)), "still here").unwrap();
    alice.send(&ClientMessage::Send { envelope });
    let (from, envelope) = sealed(bob.recv());
    assert_eq!(identity(1).open(&from, &peer_key(identity(0)), &envelope).unwrap(), "still here");
}

#[test]
fn a_hello_over_64_kib_is_refused_and_one_at_the_limit_is_read() {
    let server = TestServer::with_defaults();
    let limit = ciphercast::shared::limits::MAX_HELLO_FRAME_LEN;
    assert_eq!(limit, 64 * 1024);
    // At the limit: a hello padded with JSON white space to exactly 64 KiB
    // (the kind byte and the payload) is read whole and answered.
    let hello = ciphercast::shared::message::encode(&support::hello("padded", identity(0).public_pem())).unwrap();
    let mut hello = hello[5..].to_vec(); // the JSON, without its frame header
    hello.resize(limit as usize - 1, b' ');
    let frame = ciphercast::shared::frame::encode_frame(FrameKind::Control, &hello).unwrap();
    assert_eq!(frame[..4], limit.to_be_bytes());
    let mut padded = TestClient::connect(server.addr);
    padded.send_raw(&frame);
    assert!(matches!(padded.recv(), ServerMessage::Welcome { .. }), "a hello of exactly 64 KiB was not read");

    // One byte more: refused on its header alone, and closed.
    let mut stranger = TestClient::connect(server.addr);
    stranger.send_raw(&(limit + 1).to_be_bytes());
    match stranger.recv() {
        ServerMessage::Refused { code: RefusalCode::Protocol, reason } => {
            assert!(reason.contains(&(limit + 1).to_string()), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(stranger.recv_until_closed().is_empty());
}

#[test]
fn a_full_server_refuses_a_join_and_admits_one_when_a_place_frees() {
    // --max-clients 2: the third hello is refused by the registry (the
    // acceptor lets max_clients + 64 connections in, so three get past it).
    let server = TestServer::start(Config { max_clients: 2, ..Config::default() });
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let (mut carol, reply) = TestClient::hello(server.addr, "carol", identity(2).public_pem());
    match reply {
        ServerMessage::Refused { code: RefusalCode::ServerFull, reason } => {
            assert!(reason.contains("2 clients"), "{reason}")
        }
        other => panic!("carol was not refused: {other:?}"),
    }
    assert!(carol.recv_until_closed().is_empty());
    // Once bob has gone (alice hears it, so the registry has let him go),
    // the next newcomer takes his place.
    bob.send(&ClientMessage::Quit);
    assert!(bob.recv_until_closed().contains(&ServerMessage::Goodbye));
    alice.recv_until("bob left", |m| matches!(m, ServerMessage::PeerLeft { .. }));
    let (_carol, peers) = TestClient::join(server.addr, "carol", identity(2));
    assert_eq!(peers, ["alice"]);
}

#[test]
fn malformed_messages_get_an_error_and_the_connection_survives() {
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    hears_join(&mut alice, "bob");

    for garbage in [&b"not json"[..], br#"{"type":"launch_missiles"}"#, br#"{"type":"send"}"#, b"[1,2,3]"] {
        let frame =
            ciphercast::shared::frame::encode_frame(ciphercast::shared::frame::FrameKind::Control, garbage).unwrap();
        alice.send_raw(&frame);
        assert!(
            matches!(alice.recv(), ServerMessage::Error { .. }),
            "no error for {:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    // An envelope for nobody: an error naming the recipient.
    let mut envelope = identity(0).seal("alice", "bob", &peer_key(identity(1)), "hi").unwrap();
    envelope.to = "nobody".into();
    alice.send(&ClientMessage::Send { envelope });
    assert!(matches!(alice.recv(), ServerMessage::Error { message } if message.contains("nobody")));

    // Still joined and relaying.
    let envelope = identity(0).seal("alice", "bob", &peer_key(identity(1)), "after the garbage").unwrap();
    alice.send(&ClientMessage::Send { envelope });
    let (from, envelope) = sealed(bob.recv());
    assert_eq!(identity(1).open(&from, &peer_key(identity(0)), &envelope).unwrap(), "after the garbage");
}

#[test]
fn a_connection_that_never_joins_is_closed_after_the_deadline() {
    let server = TestServer::with_defaults();
    let mut idle = TestClient::connect(server.addr);
    // Half a header, then silence. A per-read timeout would catch this one
    // too (nothing comes after the two bytes); the trickled hello below is
    // what only a deadline counted from connecting catches.
    idle.send_raw(&[0, 0]);
    match idle.recv() {
        ServerMessage::Refused { code: RefusalCode::Protocol, reason } => {
            assert!(reason.contains("10 s") || reason.contains("hello"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(idle.recv_until_closed().is_empty());
}

#[test]
fn a_hello_trickled_one_byte_a_second_is_cut_off_at_the_join_deadline() {
    // A per-read timeout starts again at every byte, so it never fires
    // against a client that sends one byte a second: such a hello (hundreds
    // of bytes) would hold a waiting place for minutes. The join deadline
    // counts from connecting: 10 s, however the bytes come.
    let server = TestServer::with_defaults();
    let mut trickler = TestClient::connect(server.addr);
    trickler.name = "trickler".into();
    let hello = ciphercast::shared::message::encode(&support::hello("trickler", identity(0).public_pem())).unwrap();
    // The pace of the trickle: also how long each read below waits for the
    // server's answer before the next byte goes.
    trickler.stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    // Give up after 40 bytes (40 s): four times the deadline, a bound only a bug reaches.
    let give_up = 40;
    assert!(hello.len() > give_up, "the hello is too short to trickle for {give_up} s");
    let mut cut_off = false;
    for byte in &hello[..give_up] {
        if trickler.try_send_raw(&[*byte]).is_err() {
            cut_off = true; // the server has closed the connection
            break;
        }
        match trickler.try_recv() {
            Ok(ServerMessage::Refused { code: RefusalCode::Protocol, reason }) => {
                assert!(reason.contains("10 s"), "{reason}");
                cut_off = true;
                break;
            }
            Ok(other) => panic!("the trickler got {other:?}"),
            Err(RecvError::Frame(FrameError::Io(e)))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                cut_off = true; // closed without a word
                break;
            }
        }
    }
    assert!(cut_off, "the server was still waiting for a trickled hello after {give_up} s");
    // Refused or cut off, the connection is then closed.
    trickler.stream.set_read_timeout(Some(support::TIMEOUT)).unwrap();
    trickler.drain_until_closed(1024);
}

#[test]
fn a_client_that_stops_reading_is_disconnected_and_nobody_else_suffers() {
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (_sleeper, _) = TestClient::join(server.addr, "sleeper", identity(1));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(2));
    hears_join(&mut alice, "bob");

    // Broadcast 1 MiB envelopes (the server cannot tell they are not real
    // ciphertext) until the sleeper's outbox and socket buffers are full.
    let template = support::fake_envelope("bob", "0".into(), 1024 * 1024);
    let (mut sleeper_left, mut bob_told) = (false, false);
    for i in 0..200 {
        alice.send(&ClientMessage::Send { envelope: Envelope { id: i.to_string(), ..template.clone() } });
        // bob keeps reading, so he is never the one dropped.
        bob.recv_until("a sealed message", |m| {
            bob_told |= matches!(m, ServerMessage::PeerLeft { name, .. } if name == "sleeper");
            matches!(m, ServerMessage::Sealed { .. })
        });
        while alice.has_pending() {
            if let ServerMessage::PeerLeft { name, reason } = alice.recv() {
                assert_eq!((name.as_str(), reason), ("sleeper", LeaveReason::Disconnected));
                sleeper_left = true;
            }
        }
        if sleeper_left {
            break;
        }
    }
    assert!(sleeper_left, "the sleeper was never disconnected");
    // bob hears of it too, and is still served.
    if !bob_told {
        bob.recv_until("sleeper left", |m| matches!(m, ServerMessage::PeerLeft { .. }));
    }
}

#[test]
fn a_client_that_asks_without_reading_the_answers_is_disconnected_and_the_others_carry_on() {
    // A client asks and asks and never reads what it is answered: the
    // answers pile up behind its full socket in its outbox, and once that is
    // over its bounds (1024 messages or 32 MiB) the server disconnects it.
    // What it must never do is keep the client and drop answers: a client
    // gets every answer, in order, or loses its connection.
    let server = TestServer::with_defaults();
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let (mut carol, _) = TestClient::join(server.addr, "carol", identity(2));
    let (mut asker, _) = TestClient::join(server.addr, "asker", identity(0));
    hears_join(&mut bob, "asker");
    hears_join(&mut carol, "asker");
    // A malformed message is answered with an error and the connection
    // stays open; this one is large, and so is its answer, which quotes it.
    let question = format!(r#"{{"type":"{}"}}"#, "?".repeat(4000));
    let question = ciphercast::shared::frame::encode_frame(FrameKind::Control, question.as_bytes()).unwrap();
    // Asked last in each round, its answer (a video list) ends the round.
    let last = ciphercast::shared::message::encode(&ClientMessage::ListVideos).unwrap();
    // Rounds of 1024, 2048, ... questions read only once all are asked: the
    // socket buffers take a few megabytes, so a round soon piles up more.
    let mut disconnected = false;
    for round in 0..5 {
        let questions = 1024 << round;
        let asked = (0..questions).all(|_| asker.try_send_raw(&question).is_ok());
        if !asked || asker.try_send_raw(&last).is_err() {
            disconnected = true; // the server reset the connection mid-round
            break;
        }
        match read_answers(&mut asker) {
            Answers::Then(errors) => assert_eq!(
                errors,
                questions,
                "the server dropped {} of {questions} answers and kept the client connected",
                questions - errors
            ),
            Answers::Closed => {
                disconnected = true;
                break;
            }
        }
    }
    assert!(disconnected, "a client that never reads while it asks was never disconnected");
    asker.drain_until_closed(64 << 20);
    let left = bob.recv_until("asker left", |m| matches!(m, ServerMessage::PeerLeft { .. }));
    assert_eq!(left, ServerMessage::PeerLeft { name: "asker".into(), reason: LeaveReason::Disconnected });
    // The others carry on.
    let envelope = identity(1).seal("bob", "carol", &peer_key(identity(2)), "it went quiet").unwrap();
    bob.send(&ClientMessage::Send { envelope });
    let (from, envelope) = sealed(carol.recv_until("bob's message", |m| matches!(m, ServerMessage::Sealed { .. })));
    assert_eq!(identity(2).open(&from, &peer_key(identity(1)), &envelope).unwrap(), "it went quiet");
}

/// How a round of questions was answered.
enum Answers {
    /// So many errors, then the video list.
    Then(usize),
    /// The server ended the connection first.
    Closed,
}

/// Reads a round's answers: errors until the video list, or the end of the
/// connection (which may cut a frame short). A read timeout fails the test:
/// the answers stopped and the connection stayed open.
fn read_answers(client: &mut TestClient) -> Answers {
    let deadline = std::time::Instant::now() + support::TIMEOUT;
    let mut errors = 0;
    for _ in 0..1_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}: answers still coming after {:?}",
            client.name,
            support::TIMEOUT
        );
        match client.try_recv() {
            Ok(ServerMessage::Error { .. }) => errors += 1,
            Ok(ServerMessage::VideoList { .. }) => return Answers::Then(errors),
            Ok(_) => {}
            Err(RecvError::Frame(FrameError::Closed)) => return Answers::Closed,
            Err(RecvError::Frame(FrameError::Io(e)))
                if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof) =>
            {
                return Answers::Closed;
            }
            Err(e) => panic!("{}: after {errors} answers the next did not come: {e}", client.name),
        }
    }
    panic!("{}: no end to the answers", client.name);
}

#[test]
fn shutdown_tells_every_client_and_returns() {
    let mut server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let _pending = TestClient::connect(server.addr); // connected, never joins
    server.stop(); // panics if the server does not return in time
    let rest = alice.recv_until_closed();
    assert!(rest.iter().any(|m| matches!(m, ServerMessage::ServerClosing { .. })), "{rest:?}");
}

#[test]
fn shutdown_during_a_flood_returns_and_tells_everyone() {
    // One client sends the largest sealed messages as fast as it can to a
    // classmate who reads one every two seconds, so the server is holding
    // the sender back when it is told to stop. It must still return, and
    // both must be told and then see their connections closed.
    let mut server = TestServer::start(Config { relay: RelayMode::Direct, ..Config::default() });
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (bob, _) = TestClient::join(server.addr, "bob", identity(1));
    hears_join(&mut alice, "bob");
    let bob = SlowReader::start(bob, usize::MAX, Duration::from_secs(2));
    let (held, held_back) = std::sync::mpsc::channel();
    let alice = std::thread::spawn(move || {
        // Until the server closes the connection (or the flood's own bounds).
        let flood = flood_until_held(&mut alice, "bob", 10_000, Duration::from_secs(1), || {
            let _ = held.send(());
        });
        assert!(flood.is_err(), "alice's flood went on: the server never closed her connection");
        alice.recv_until_closed()
    });
    held_back.recv_timeout(support::TIMEOUT).expect("the server never held the flood back");
    // Bob reads at full speed from now on, so what is queued for him goes.
    bob.hurry();
    server.stop(); // panics if the server does not return in time
    let told = |messages: &[ServerMessage]| messages.iter().any(|m| matches!(m, ServerMessage::ServerClosing { .. }));
    let alice_got = support::join_bounded("alice's flood", alice);
    assert!(told(&alice_got), "alice was not told: {alice_got:?}");
    let seen = bob.finish();
    assert!(told(&seen.others), "bob was not told: {seen:?}");
    assert!(matches!(seen.ended, Some(RecvError::Frame(FrameError::Closed))), "bob: {seen:?}");
}

#[test]
fn a_whole_class_connecting_at_once_is_admitted() {
    // More connections than may wait to join at a time, all open before
    // anyone says hello: the acceptor waits for places instead of refusing.
    let server = TestServer::with_defaults();
    let count = ciphercast::shared::limits::MAX_PENDING_JOINS * 2 + 10;
    let mut connected: Vec<TestClient> = (0..count).map(|_| TestClient::connect(server.addr)).collect();
    for (i, client) in connected.iter_mut().enumerate() {
        client.send(&ClientMessage::Hello {
            version: ciphercast::shared::limits::PROTOCOL_VERSION,
            name: format!("student{i}"),
            public_key: identity(i % 4).public_pem().into(),
        });
    }
    // Joins that arrive together are admitted together; each student's
    // registry must still end up with every classmate exactly once: those
    // in its welcome, then one announcement for each later one.
    for (i, client) in connected.iter_mut().enumerate() {
        let me = format!("student{i}");
        let mut known: Vec<String> = match client.recv() {
            ServerMessage::Welcome { peers, .. } => peers.iter().map(|p| p.name.to_string()).collect(),
            other => panic!("{me} got {other:?}"),
        };
        while known.len() < count - 1 {
            match client.recv() {
                ServerMessage::PeerJoined { name, .. } => known.push(name.to_string()),
                other => panic!("{me} got {other:?}"),
            }
        }
        known.sort();
        known.dedup();
        assert_eq!(known.len(), count - 1, "{me} was told about someone twice");
        assert!(!known.contains(&me), "{me} was told about itself");
    }
}

#[test]
fn strangers_who_never_join_cannot_take_every_thread() {
    let server = TestServer::with_defaults();
    let strangers: Vec<TestClient> =
        (0..ciphercast::shared::limits::MAX_PENDING_JOINS).map(|_| TestClient::connect(server.addr)).collect();
    // Every waiting place is taken and nobody leaves it: after a short wait
    // the next connection is turned away, with a reason, without a thread.
    let (_, reply) = TestClient::hello(server.addr, "latecomer", identity(0).public_pem());
    match reply {
        ServerMessage::Refused { reason, .. } => assert!(reason.contains("waiting to join"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(strangers);
    // Their places come free once the server has seen them go (nothing on
    // the wire says when): joining works again.
    wait_until("a join after the strangers left", || {
        let (_latecomer, reply) = TestClient::hello(server.addr, "latecomer", identity(0).public_pem());
        matches!(reply, ServerMessage::Welcome { .. })
    });
}

#[test]
fn a_burst_reaches_every_bystander_whole_and_in_order() {
    // Bystanders' copies of a busy chat are sent in batches: none may be
    // lost or reordered, a message to the bystander itself still comes after
    // everything queued before it, and a burst larger than a client's outbox
    // (1024 messages) goes out before it overflows: a client that reads is
    // never disconnected for it.
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let (mut carol, _) = TestClient::join(server.addr, "carol", identity(2));
    hears_join(&mut alice, "carol");
    hears_join(&mut bob, "carol");
    let count = 1500;
    for i in 0..count {
        alice.send(&ClientMessage::Send { envelope: fake_envelope("bob", format!("m{i}"), 100) });
    }
    alice.send(&ClientMessage::Send { envelope: fake_envelope("carol", "for-carol".into(), 100) });
    let ids = |client: &mut TestClient, until: &str| {
        let mut ids = Vec::new();
        loop {
            if let ServerMessage::Sealed { envelope, .. } = client.recv() {
                ids.push(envelope.id.clone());
                if envelope.id == until {
                    return ids;
                }
            }
        }
    };
    let expected: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
    assert_eq!(ids(&mut bob, &format!("m{}", count - 1)), expected, "the addressee's messages");
    let mut with_own = expected.clone();
    with_own.push("for-carol".into());
    assert_eq!(ids(&mut carol, "for-carol"), with_own, "the bystander's copies, then its own message");
}

#[test]
fn the_server_closes_a_departed_clients_socket_at_once() {
    // Not only when the next client connects: a socket kept open after its
    // client left would sit in CLOSE_WAIT, for the class to see in `ss`.
    use std::io::Write;
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    alice.send(&ClientMessage::Quit);
    let rest = alice.recv_until_closed();
    assert!(rest.iter().any(|m| matches!(m, ServerMessage::Goodbye)), "{rest:?}");
    // Once the server has closed its socket entirely, bytes sent to it are
    // answered with a reset, and a later write fails. Nothing announces the
    // reset, so the test writes until one fails: no other client connects
    // meanwhile, so a server that closed sockets only on its next accept
    // would keep this one open until the hang bound.
    wait_until("the server closing the departed client's socket", || {
        alice.stream.write_all(b"are you still there?").is_err()
    });
}

/// Sends `count` of the largest sealed messages to `to` as fast as the
/// socket takes them.
fn flood(sender: &mut TestClient, to: &str, count: usize) {
    let envelope = fake_envelope(to, "large".into(), MAX_CIPHERTEXT_BYTES);
    let frame = ciphercast::shared::message::encode(&ClientMessage::Send { envelope }).unwrap();
    for _ in 0..count {
        sender.send_raw(&frame);
    }
}

/// A client that takes its time over each sealed message while a flood
/// lasts: it reads one, then pauses, until it is told to hurry.
struct SlowReader {
    hurry: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Seen>,
}

/// What a [`SlowReader`] saw.
#[derive(Debug)]
struct Seen {
    sealed: usize,
    /// The other messages, in order.
    others: Vec<ServerMessage>,
    /// How the connection ended, if it did.
    ended: Option<RecvError>,
}

impl SlowReader {
    /// Reads until `count` sealed messages have come or the connection ends
    /// (at most 100 000 messages, and three times the hang bound).
    fn start(mut client: TestClient, count: usize, pause: Duration) -> SlowReader {
        let hurry = Arc::new(AtomicBool::new(false));
        let hurried = Arc::clone(&hurry);
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + support::TIMEOUT * 3;
            let mut seen = Seen { sealed: 0, others: Vec::new(), ended: None };
            for _ in 0..100_000 {
                if seen.sealed == count || std::time::Instant::now() > deadline {
                    break;
                }
                match client.try_recv() {
                    Ok(ServerMessage::Sealed { .. }) => seen.sealed += 1,
                    Ok(other) => {
                        seen.others.push(other);
                        continue;
                    }
                    Err(e) => {
                        seen.ended = Some(e);
                        break;
                    }
                }
                if !hurried.load(Ordering::SeqCst) {
                    std::thread::sleep(pause);
                }
            }
            seen
        });
        SlowReader { hurry, thread }
    }

    /// From now on, reads at full speed.
    fn hurry(&self) {
        self.hurry.store(true, Ordering::SeqCst);
    }

    /// Reads the rest at full speed; returns what it saw.
    fn finish(self) -> Seen {
        self.hurry();
        support::join_bounded("a slow reader", self.thread)
    }
}

#[test]
fn a_flood_slows_its_sender_instead_of_disconnecting_readers_who_pause() {
    // One client sends the largest messages as fast as it can (broadcast
    // mode) while its classmates' clients are busy for a moment: more than
    // their outboxes hold. Nobody who then reads may be disconnected or
    // miss a message: the server must stop reading the sender until there
    // is room, not drop the readers.
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let readers: Vec<TestClient> =
        (0..3).map(|i| TestClient::join(server.addr, &format!("reader{i}"), identity(1 + i)).0).collect();
    alice.recv_until("the last reader joined", |m| joined_name(m) == Some("reader2"));
    // 60 × 1.4 MB is far more than an outbox (32 MiB) and the sockets' buffers hold.
    let count = 60;
    // The readers are busy until the flood is over or the server holds the
    // sender back, whichever comes first; then they read everything.
    let (go, handles): (Vec<_>, Vec<_>) = readers
        .into_iter()
        .map(|mut reader| {
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let handle = std::thread::spawn(move || {
                // A hang bound, in case the go never comes.
                let _ = wait.recv_timeout(support::TIMEOUT);
                let mut received = 0;
                while received < count {
                    match reader.try_recv() {
                        Ok(ServerMessage::Sealed { .. }) => received += 1,
                        Ok(_) => {}
                        Err(e) => return Err(format!("{} disconnected after {received} messages: {e}", reader.name)),
                    }
                }
                Ok(received)
            });
            (go, handle)
        })
        .unzip();
    let read_now = || {
        for go in &go {
            let _ = go.send(());
        }
    };
    // The server reads the sender as fast as it can relay (several messages
    // a second here) unless it holds her back: a write of hers that makes
    // no progress for a second is that hold, which the readers then end,
    // well within the 5 s a congested reader is given.
    flood_until_held(&mut alice, "reader0", count, Duration::from_secs(1), read_now).expect("the flood");
    read_now(); // the flood is over (a second go is never read)
    for handle in handles {
        assert_eq!(support::join_bounded("a reader", handle), Ok(count));
    }
}

/// Like [`flood`], calling `held` once, the first time a write makes no
/// progress for `patience` (the server has stopped reading the sender), and
/// stopping at the first write that fails (the server closed the
/// connection), which it returns. At most `count` messages and three times
/// the hang bound.
fn flood_until_held(
    sender: &mut TestClient,
    to: &str,
    count: usize,
    patience: Duration,
    held: impl FnOnce(),
) -> std::io::Result<()> {
    use std::io::Write;
    let envelope = fake_envelope(to, "large".into(), MAX_CIPHERTEXT_BYTES);
    let frame = ciphercast::shared::message::encode(&ClientMessage::Send { envelope }).unwrap();
    let mut held = Some(held);
    sender.stream.set_write_timeout(Some(patience)).unwrap();
    let deadline = std::time::Instant::now() + support::TIMEOUT * 3;
    for _ in 0..count {
        let mut written = 0;
        while written < frame.len() && std::time::Instant::now() < deadline {
            match sender.stream.write(&frame[written..]) {
                Ok(n) => written += n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if let Some(held) = held.take() {
                        held();
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    sender.stream.set_write_timeout(Some(support::TIMEOUT)).unwrap();
    Ok(())
}

#[test]
fn a_classmate_too_slow_for_the_class_is_disconnected_and_the_flood_goes_on() {
    // The other side of slowing a flood down: one client reading a message
    // every two seconds must not set the pace of the whole class. Once a
    // sender has waited RELAY_WAIT for it, it is disconnected, and the
    // sender goes on.
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let (slowpoke, _) = TestClient::join(server.addr, "slowpoke", identity(2));
    hears_join(&mut alice, "slowpoke");
    let count = 60;
    let slowpoke = SlowReader::start(slowpoke, count, Duration::from_secs(2));
    let addressee = std::thread::spawn(move || {
        for i in 0..count {
            bob.recv_until(&format!("message {i}"), |m| matches!(m, ServerMessage::Sealed { .. }));
        }
    });
    flood(&mut alice, "bob", count);
    addressee.join().expect("bob received every message");
    let seen = slowpoke.finish();
    assert!(seen.ended.is_some(), "slowpoke was never disconnected ({} messages)", seen.sealed);
}

#[test]
fn a_sender_is_told_when_its_addressee_could_not_keep_up() {
    // Direct relay, one addressee reading a message every two seconds: it is
    // disconnected, and the sender hears that its message was not delivered
    // rather than nothing at all.
    let server = TestServer::start(Config { relay: RelayMode::Direct, ..Config::default() });
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (slowpoke, _) = TestClient::join(server.addr, "slowpoke", identity(1));
    hears_join(&mut alice, "slowpoke");
    let count = 60;
    let slowpoke = SlowReader::start(slowpoke, count, Duration::from_secs(2));
    flood(&mut alice, "slowpoke", count);
    match alice.recv_until("an error about slowpoke", |m| matches!(m, ServerMessage::Error { .. })) {
        ServerMessage::Error { message } => assert!(message.contains("\"slowpoke\" cannot keep up"), "{message}"),
        other => unreachable!("{other:?}"),
    }
    let seen = slowpoke.finish();
    assert!(seen.ended.is_some(), "slowpoke was never disconnected ({} messages)", seen.sealed);
}

#[test]
fn a_name_that_looks_like_a_connected_one_is_refused() {
    let server = TestServer::with_defaults();
    let (_bob, _) = TestClient::join(server.addr, "bob", identity(1));
    for (name, code) in [("b\u{043E}b", RefusalCode::ConfusableName), ("bob\u{3164}", RefusalCode::InvalidName)] {
        let (_client, reply) = TestClient::hello(server.addr, name, identity(2).public_pem());
        match reply {
            ServerMessage::Refused { code: got, reason } => assert_eq!(got, code, "{name:?}: {reason}"),
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    let (_rob, _) = TestClient::join(server.addr, "rob", identity(2));
}

#[test]
fn max_per_address_caps_the_clients_of_one_address_and_frees_a_place_on_leave() {
    let server = TestServer::start(Config { max_per_address: Some(2), ..Config::default() });
    let (mut first, _) = TestClient::join(server.addr, "one", identity(0));
    let (_second, _) = TestClient::join(server.addr, "two", identity(1));
    let (_third, reply) = TestClient::hello(server.addr, "three", identity(2).public_pem());
    assert!(matches!(reply, ServerMessage::Refused { code: RefusalCode::AddressLimit, .. }), "{reply:?}");
    first.send(&ClientMessage::Quit);
    first.recv_until_closed();
    let (_third, reply) = TestClient::hello(server.addr, "three", identity(2).public_pem());
    assert!(matches!(reply, ServerMessage::Welcome { .. }), "a place was freed: {reply:?}");
}
