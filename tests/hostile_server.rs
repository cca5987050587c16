//! A server that lies: the test plays the server and tampers with what it
//! relays. The client binary must reject or warn about each trick, with the
//! matching line, and must never show a tampered message as genuine. And a
//! classmate who holds the real server's door: nobody else waits for them.

mod support;

use std::net::{TcpListener, TcpStream};

use ciphercast::shared::connection::{FrameReader, FrameWriter};
use ciphercast::shared::crypto::{PeerKey, now_millis};
use ciphercast::shared::limits::{MAX_FRAME_LEN, PROTOCOL_VERSION};
use ciphercast::shared::message::{ClientMessage, Peer, ServerMessage, VideoInfo};
use support::{Process, Stream, TIMEOUT, identity};

/// The client binary, joining as `me`, connected to the test playing the server.
struct Lying {
    client: Process,
    from_client: FrameReader<TcpStream>,
    to_client: FrameWriter<TcpStream>,
    /// The socket itself, for frames the writer would not send.
    raw: TcpStream,
}

fn lying_server() -> Lying {
    lying_server_for(&support::fresh_config_dir())
}

/// [`lying_server`], for a client whose configuration (its key, its known
/// peers, the ids it has seen) lives in `config`.
fn lying_server_for(config: &std::path::Path) -> Lying {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let client = Process::start_command(
        std::process::Command::new(env!("CARGO_BIN_EXE_ciphercast"))
            .args(["client", "--server", &address, "--name", "me", "--display", "none"])
            .env("XDG_CONFIG_HOME", config),
    );
    let (socket, _) = listener.accept().unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let from_client = FrameReader::new(socket.try_clone().unwrap(), MAX_FRAME_LEN);
    let raw = socket.try_clone().unwrap();
    Lying { client, from_client, to_client: FrameWriter::new(socket), raw }
}

#[test]
fn the_client_rejects_or_warns_about_every_tampering() {
    let Lying { mut client, mut from_client, mut to_client, .. } = lying_server();

    let ClientMessage::Hello { public_key, .. } = from_client.recv::<ClientMessage>().unwrap() else {
        panic!("no hello")
    };
    let me = PeerKey::from_pem(&public_key).unwrap();
    let (alice, carol) = (identity(0), identity(2));
    let peer = |name: &str, pem: &str| Peer { name: name.into(), public_key: pem.into() };
    let welcome = ServerMessage::Welcome {
        version: PROTOCOL_VERSION,
        name: "me".into(),
        peers: vec![peer("alice", alice.public_pem()), peer("carol", carol.public_pem())],
    };
    to_client.send(&welcome).unwrap();
    client.wait_for(Stream::Out, "online: alice, carol");
    client.wait_for(Stream::Out, &format!("new key for alice: {}", alice.fingerprint()));

    let sealed = |from: &str, envelope| ServerMessage::Sealed { from: from.into(), envelope };
    let genuine = alice.seal("alice", "me", &me, "genuine").unwrap();
    to_client.send(&sealed("alice", genuine.clone())).unwrap();
    client.wait_for(Stream::Out, "[alice] genuine");

    // A flipped ciphertext byte.
    let mut flipped = alice.seal("alice", "me", &me, "flipped").unwrap();
    flipped.ciphertext[0] ^= 0x01;
    to_client.send(&sealed("alice", flipped)).unwrap();
    client.wait_for(Stream::Out, "warning: message from alice rejected: bad signature");

    // The server claims carol sent alice's message.
    let relabelled = alice.seal("alice", "me", &me, "relabelled").unwrap();
    to_client.send(&sealed("carol", relabelled)).unwrap();
    client.wait_for(Stream::Out, "warning: message from carol rejected: bad signature");

    // The genuine message again.
    to_client.send(&sealed("alice", genuine)).unwrap();
    client.wait_for(Stream::Out, "warning: message from alice rejected: replayed");

    // A genuine message, an hour old.
    let stale = alice.seal_at("alice", "me", &me, "old news", now_millis() - 3_600_000).unwrap();
    to_client.send(&sealed("alice", stale)).unwrap();
    client.wait_for(Stream::Out, "warning: message from alice rejected: stale timestamp");

    // alice comes back with another key.
    let impostor = identity(3);
    to_client
        .send(&ServerMessage::PeerJoined { name: "alice".into(), public_key: impostor.public_pem().into() })
        .unwrap();
    client.wait_for(
        Stream::Out,
        &format!("warning: KEY CHANGED for alice: was {}, now {}", alice.fingerprint(), impostor.fingerprint()),
    );
    // A message signed with the new, unaccepted key is not shown, only flagged.
    let from_impostor = impostor.seal("alice", "me", &me, "trust me").unwrap();
    to_client.send(&sealed("alice", from_impostor)).unwrap();
    client.wait_for(Stream::Out, "warning: a message from alice signed with a CHANGED key");
    client.wait_for(Stream::Out, "answer y to accept it");
    // Sending to her asks first; declining sends nothing.
    client.type_text("1\nalice\nn\n");
    client.wait_for(Stream::Out, "Send anyway? [y/N]: ");
    client.wait_for(Stream::Out, "not sent");

    // Escapes in an error string and in a video name are shown, not run.
    to_client.send(&ServerMessage::Error { message: "\u{1b}[2J\u{1b}]0;owned\u{7}".into() }).unwrap();
    client.wait_for(Stream::Out, "warning: server says: \\x1b[2J\\x1b]0;owned\\x07");
    client.type_text("2\n");
    assert!(matches!(from_client.recv::<ClientMessage>().unwrap(), ClientMessage::ListVideos));
    let videos = vec![VideoInfo { name: "Evil\u{1b}[31m".into(), resolutions: vec!["240p".into()], prepared: None }];
    to_client.send(&ServerMessage::VideoList { videos }).unwrap();
    client.wait_for(Stream::Out, "  1. Evil\\x1b[31m (240p)");
    client.type_text("\n"); // back to the menu

    // End of input: the client says quit; we say goodbye.
    client.close_stdin();
    assert!(matches!(from_client.recv::<ClientMessage>().unwrap(), ClientMessage::Quit));
    to_client.send(&ServerMessage::Goodbye).unwrap();
    drop(to_client);
    assert_eq!(client.finish(), 0);
    assert!(!client.stdout.iter().any(|line| line.contains("trust me")), "text under a changed key was shown");

    // Nothing was sent in answer to a message it could not open, and no
    // escape reached the terminal.
    assert!(!client.stdout.iter().any(|l| l.contains('\u{1b}')));
    assert!(
        !client
            .stdout
            .iter()
            .any(|l| l.contains("[alice] flipped") || l.contains("relabelled") || l.contains("old news"))
    );
}

/// Reads the client's peak resident memory (VmHWM), in MiB.
fn peak_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

#[test]
fn the_client_holds_its_limits_against_a_server_that_pushes_past_them() {
    use ciphercast::shared::frame::{FrameKind, encode_frame};
    use ciphercast::shared::limits::MAX_MAX_CLIENTS;
    use ciphercast::shared::video::{EndReason, FrameHeader, Pace, PlanPart};

    let Lying { mut client, mut from_client, mut to_client, mut raw } = lying_server();
    let Ok(ClientMessage::Hello { .. }) = from_client.recv::<ClientMessage>() else { panic!("no hello") };

    // A welcome listing 20 000 peers (as many as fit in a frame), one of them under the client's own name.
    let key = identity(0).public_pem();
    let mut peers: Vec<Peer> = vec![Peer { name: "me".into(), public_key: key.into() }];
    peers.extend((0..20_000).map(|i| Peer { name: format!("p{i}").into(), public_key: key.into() }));
    to_client.send(&ServerMessage::Welcome { version: PROTOCOL_VERSION, name: "me".into(), peers }).unwrap();
    client.wait_for(Stream::Out, &format!("only the first {MAX_MAX_CLIENTS} are kept"));
    client.wait_for(Stream::Out, "warning: the server announced an invalid name \"me\" (it is your own name); ignored");

    // A 15 MiB error text is cut to 4 KiB.
    to_client.send(&ServerMessage::Error { message: "x".repeat(15 << 20) }).unwrap();
    let line = client.wait_for(Stream::Out, "warning: server says: ");
    assert!(line.len() < 5000 && line.ends_with(&format!("… ({} more bytes)", (15 << 20) - 4096)), "{}", line.len());

    // A 610-byte JPEG declaring 32767×32767, sent as a video frame.
    client.type_text("2\nbomb\n");
    assert!(matches!(from_client.recv::<ClientMessage>().unwrap(), ClientMessage::ListVideos));
    let videos = vec![VideoInfo { name: "bomb".into(), resolutions: vec!["240p".into()], prepared: None }];
    to_client.send(&ServerMessage::VideoList { videos }).unwrap();
    assert!(matches!(from_client.recv::<ClientMessage>().unwrap(), ClientMessage::Play { pace: Pace::Native, .. }));
    // Its plan names 240p only (and, like a server older than the adaptive
    // plan, it lists no renditions), so a picture declaring 1920×1080 is refused too.
    let plan = vec![PlanPart { resolution: "240p".into(), first: 0, last: 1 }];
    let start =
        ServerMessage::StreamStart { stream: 1, video: "bomb".into(), fps: 30.0, frames: 2, plan, renditions: vec![] };
    to_client.send(&start).unwrap();
    let jpeg_declaring = |width: u16, height: u16| {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8];
        jpeg.extend_from_slice(&height.to_be_bytes());
        jpeg.extend_from_slice(&width.to_be_bytes());
        jpeg.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        jpeg.resize(610, 0);
        jpeg
    };
    for (sequence, (width, height)) in [(32767, 32767), (1920, 1080)].into_iter().enumerate() {
        let mut payload = Vec::new();
        let header = FrameHeader { stream: 1, sequence: sequence as u32, pts_micros: 0, resolution: "240p".into() };
        header.encode_into(&mut payload);
        payload.extend_from_slice(&jpeg_declaring(width, height));
        std::io::Write::write_all(&mut raw, &encode_frame(FrameKind::Video, &payload).unwrap()).unwrap();
    }
    client.wait_for(Stream::Out, "warning: frame 0 declares 32767×32767");
    client.wait_for(Stream::Out, "warning: frame 1 declares 1920×1080, over the 1920×480 this stream allows");
    let end =
        ServerMessage::StreamEnd { stream: 1, reason: EndReason::Finished, frames: 2, total: Some(2), message: None };
    to_client.send(&end).unwrap();
    client.wait_for(Stream::Out, "summary: video=bomb frames=2/2");
    assert!(peak_mib(client.child.id()) < 600, "peak {} MiB", peak_mib(client.child.id()));

    client.close_stdin();
    assert!(matches!(from_client.recv::<ClientMessage>().unwrap(), ClientMessage::Quit));
    to_client.send(&ServerMessage::Goodbye).unwrap();
    assert_eq!(client.finish(), 0);
}

#[test]
fn a_replay_is_refused_after_the_client_restarts_with_its_identity() {
    let config = support::fresh_config_dir();
    let alice = identity(0);
    let mut envelope = None;
    for run in ["first", "second"] {
        let Lying { mut client, mut from_client, mut to_client, .. } = lying_server_for(&config);
        let Ok(ClientMessage::Hello { public_key, .. }) = from_client.recv::<ClientMessage>() else {
            panic!("no hello")
        };
        let me = PeerKey::from_pem(&public_key).unwrap();
        let peers = vec![Peer { name: "alice".into(), public_key: alice.public_pem().into() }];
        to_client.send(&ServerMessage::Welcome { version: PROTOCOL_VERSION, name: "me".into(), peers }).unwrap();
        // The same envelope both times: sealed once, to the key the client keeps.
        let sealed = envelope.get_or_insert_with(|| alice.seal("alice", "me", &me, "only once").unwrap()).clone();
        to_client.send(&ServerMessage::Sealed { from: "alice".into(), envelope: sealed }).unwrap();
        if run == "first" {
            client.wait_for(Stream::Out, "[alice] only once");
        } else {
            client.wait_for(Stream::Out, "warning: message from alice rejected: replayed");
        }
        client.close_stdin();
        assert!(matches!(from_client.recv::<ClientMessage>().unwrap(), ClientMessage::Quit));
        to_client.send(&ServerMessage::Goodbye).unwrap();
        assert_eq!(client.finish(), 0);
    }
}

#[test]
fn a_classmate_holding_the_door_delays_only_their_own_address() {
    use ciphercast::shared::limits::{MAX_PENDING_JOINS, MAX_PENDING_PER_ADDRESS};
    use ciphercast::shared::message::RefusalCode;
    use std::net::Ipv4Addr;
    use support::{TestClient, TestServer};

    let server = TestServer::with_defaults();
    let classmate = Ipv4Addr::new(127, 0, 0, 2);
    // As many silent connections as may wait to join in all, from one host:
    // the first few wait, the rest queue at that address's door.
    let mut silent: Vec<TestClient> =
        (0..MAX_PENDING_JOINS).map(|_| TestClient::connect_from(classmate, server.addr)).collect();

    // Another host joins at once.
    let (_honest, _) = TestClient::join(server.addr, "honest", identity(0));

    // Those queued are turned away with `busy` once they have waited too long.
    match silent.last_mut().unwrap().recv() {
        ServerMessage::Refused { code: RefusalCode::Busy, .. } => {}
        other => panic!("a queued connection got {other:?}"),
    }

    // A connection from the classmate's host that says hello queues, and
    // goes in as soon as one of the silent ones gives its place up.
    let mut waiting = TestClient::connect_from(classmate, server.addr);
    waiting.send(&support::hello("patient", identity(1).public_pem()));
    assert!(silent.len() > MAX_PENDING_PER_ADDRESS);
    drop(silent.remove(0)); // the first one accepted: among those waiting, not queued
    match waiting.recv() {
        ServerMessage::Welcome { peers, .. } => assert_eq!(peers.len(), 1, "{peers:?}"),
        other => panic!("the queued join got {other:?}"),
    }
}

#[test]
fn a_verified_peer_whose_key_changes_is_a_hard_stop_and_its_look_alike_is_refused() {
    let config = support::fresh_config_dir();
    let (bob, impostor) = (identity(0), identity(3));
    let welcome = |to_client: &mut FrameWriter<TcpStream>, peers: Vec<Peer>| {
        to_client.send(&ServerMessage::Welcome { version: PROTOCOL_VERSION, name: "me".into(), peers }).unwrap();
    };
    let bye =
        |mut client: Process, from_client: &mut FrameReader<TcpStream>, to_client: &mut FrameWriter<TcpStream>| {
            client.close_stdin();
            assert!(matches!(from_client.recv::<ClientMessage>().unwrap(), ClientMessage::Quit));
            to_client.send(&ServerMessage::Goodbye).unwrap();
            assert_eq!(client.finish(), 0);
            client
        };

    // First run: bob is met, and verified through option 4.
    let Lying { mut client, mut from_client, mut to_client, .. } = lying_server_for(&config);
    let Ok(ClientMessage::Hello { .. }) = from_client.recv::<ClientMessage>() else { panic!("no hello") };
    welcome(&mut to_client, vec![Peer { name: "bob".into(), public_key: bob.public_pem().into() }]);
    client.wait_for(Stream::Out, &format!("new key for bob: {}", bob.fingerprint()));
    client.type_text("4\nbob\ny\n");
    client.wait_for(Stream::Out, &format!("  bob  {}", bob.fingerprint()));
    client.wait_for(Stream::Out, "bob verified.");
    bye(client, &mut from_client, &mut to_client);

    // Second run: the server announces a look-alike of bob (offline), then
    // bob himself with another key.
    let Lying { mut client, mut from_client, mut to_client, .. } = lying_server_for(&config);
    let Ok(ClientMessage::Hello { public_key, .. }) = from_client.recv::<ClientMessage>() else { panic!("no hello") };
    let me = PeerKey::from_pem(&public_key).unwrap();
    welcome(&mut to_client, vec![Peer { name: "b\u{043E}b".into(), public_key: impostor.public_pem().into() }]);
    client
        .wait_for(Stream::Out, "warning: the server announced an invalid name \"b\u{043E}b\" (it looks like \"bob\")");
    let swapped = ServerMessage::PeerJoined { name: "bob".into(), public_key: impostor.public_pem().into() };
    to_client.send(&swapped).unwrap();
    client.wait_for(Stream::Out, "warning: KEY CHANGED for bob");
    // Text under the new key is not shown; sending to bob is refused outright.
    let from_impostor = impostor.seal("bob", "me", &me, "it is me, bob").unwrap();
    to_client.send(&ServerMessage::Sealed { from: "bob".into(), envelope: from_impostor }).unwrap();
    client.wait_for(Stream::Out, "You verified bob's old key");
    client.type_text("1\nbob\n");
    client.wait_for(Stream::Out, "not sent: you verified bob's old key");
    // Option 4 shows the change; comparing again and answering y unlocks bob.
    client.type_text("4\n");
    client.wait_for(Stream::Out, "which you verified)");
    client.type_text("bob\ny\n");
    client.wait_for(Stream::Out, "bob verified.");
    client.type_text("1\nbob\nnow we talk\n");
    // (Not just any line with "sent to bob": the warning above has one too.)
    client.wait_for_next(Stream::Out, "sent to bob");
    match from_client.recv::<ClientMessage>().unwrap() {
        ClientMessage::Send { envelope } => assert_eq!(envelope.to, "bob"),
        other => panic!("expected the message, got {other:?}"),
    }

    // The key is swapped again while the user types, or while they compare
    // fingerprints: the message is not sealed to it, and it is not marked.
    let third = identity(4);
    let swap = |to_client: &mut FrameWriter<TcpStream>, key: &ciphercast::shared::crypto::Identity| {
        let joined = ServerMessage::PeerJoined { name: "bob".into(), public_key: key.public_pem().into() };
        to_client.send(&joined).unwrap();
    };
    // (The message's first line ends in `\`: the client is still reading it.)
    client.type_text("1\nbob\nfor the verified \\\n");
    client.wait_for_next(Stream::Out, "Message: ");
    swap(&mut to_client, third);
    client.wait_for_next(Stream::Out, "warning: KEY CHANGED for bob, whom you verified");
    client.type_text("bob only\n");
    client.wait_for(Stream::Out, "not sent: bob's key changed while you were typing");
    client.type_text("4\nbob\n");
    client.wait_for_next(Stream::Out, "group by group, with:");
    swap(&mut to_client, impostor);
    client.wait_for_next(Stream::Out, "bob joined");
    client.type_text("y\n");
    client.wait_for(Stream::Out, "Nothing marked: bob's key changed");
    let client = bye(client, &mut from_client, &mut to_client);
    assert!(!client.stdout.iter().any(|l| l.contains("it is me, bob")), "text under a changed key was shown");
    assert!(!client.stdout.iter().any(|l| l.contains("Send anyway")), "a verified peer's change was only a question");
}
