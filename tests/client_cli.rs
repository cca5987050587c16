//! The client binary as a user drives it: stdin piped, stdout and stderr
//! read line by line, against a real server on 127.0.0.1.

mod support;

use ciphercast::shared::message::{ClientMessage, LeaveReason, ServerMessage};
use support::{Process, Stream, TestClient, TestServer, identity, peer_key};

fn client(server: &TestServer, name: &str) -> Process {
    Process::start(&["client", "--server", &server.addr.to_string(), "--name", name])
}

#[test]
fn end_of_input_says_bye_and_exits_zero() {
    let server = TestServer::with_defaults();
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let mut alice = client(&server, "alice");
    alice.close_stdin();
    assert_eq!(alice.finish(), 0, "{:#?}", alice.stderr);
    let out = &alice.stdout;
    let fingerprint = out.iter().find(|l| l.starts_with("Your fingerprint: ")).expect("fingerprint line");
    let groups: Vec<&str> = fingerprint["Your fingerprint: ".len()..].split(' ').collect();
    assert_eq!(groups.len(), 16, "{fingerprint}");
    let connected =
        out.iter().position(|l| *l == format!("Connected to {} as alice", server.addr)).expect("connected line");
    assert_eq!(out[connected + 1], "online: bob");
    assert!(out.last().unwrap().ends_with("bye"), "{out:#?}");
    // The client said Quit: bob is told alice quit rather than vanished.
    let left = bob.recv_until("alice left", |m| matches!(m, ServerMessage::PeerLeft { .. }));
    assert_eq!(left, ServerMessage::PeerLeft { name: "alice".into(), reason: LeaveReason::Quit });
}

#[test]
fn the_first_client_is_told_nobody_else_is_online() {
    let server = TestServer::with_defaults();
    let mut alice = client(&server, "alice");
    alice.wait_for(Stream::Out, "online: nobody else yet");
    assert_eq!(alice.finish(), 0);
}

#[test]
fn a_taken_name_is_refused_with_exit_status_one() {
    let server = TestServer::with_defaults();
    let (_bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let mut impostor = client(&server, "bob");
    assert_eq!(impostor.finish(), 1);
    assert!(impostor.stderr.iter().any(|l| l == "error: name \"bob\" is taken"), "{:#?}", impostor.stderr);
}

#[test]
fn an_unreachable_server_says_where_it_looked_and_exits_one() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let mut alice = Process::start(&["client", "--server", &address, "--name", "alice"]);
    assert_eq!(alice.finish(), 1);
    let error = alice.stderr.join("\n");
    assert!(error.contains(&format!("cannot reach the server at {address}")), "{error}");
    assert!(error.contains("make run-server"), "{error}");
}

#[test]
fn option_one_lists_clients_asks_again_for_unknown_names_and_sends() {
    let server = TestServer::with_defaults();
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let mut alice = client(&server, "alice");
    alice.wait_for(Stream::Out, "online: bob");
    alice.type_text("1\nzed\nbob\nhello bob\\\nsecond line\n");
    alice.wait_for(Stream::Out, "Available clients: bob");
    alice.wait_for(Stream::Out, "No client named zed.");
    alice.wait_for(Stream::Out, "sent to bob");

    let alice_key = match bob.recv_until("alice joined", |m| matches!(m, ServerMessage::PeerJoined { .. })) {
        ServerMessage::PeerJoined { public_key, .. } => {
            ciphercast::shared::crypto::PeerKey::from_pem(&public_key).unwrap()
        }
        _ => unreachable!(),
    };
    match bob.recv_until("a sealed message", |m| matches!(m, ServerMessage::Sealed { .. })) {
        ServerMessage::Sealed { from, envelope } => {
            assert_eq!(from, "alice");
            assert_eq!(identity(1).open(&from, &alice_key, &envelope).unwrap(), "hello bob\nsecond line");
        }
        _ => unreachable!(),
    }
    alice.type_text("3\n");
    assert_eq!(alice.finish(), 0);
    assert!(alice.stdout.last().unwrap().ends_with("bye"));
}

#[test]
fn events_and_messages_are_printed_as_they_arrive_and_escapes_are_made_visible() {
    let server = TestServer::with_defaults();
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let mut carol = client(&server, "carol");
    carol.wait_for(Stream::Out, "online: alice");
    let carol_key = match alice.recv_until("carol joined", |m| matches!(m, ServerMessage::PeerJoined { .. })) {
        ServerMessage::PeerJoined { public_key, .. } => {
            ciphercast::shared::crypto::PeerKey::from_pem(&public_key).unwrap()
        }
        _ => unreachable!(),
    };
    let (_dave, _) = TestClient::join(server.addr, "dave", identity(3));
    carol.wait_for(Stream::Out, "dave joined");

    let text = "line one\nline two \u{1b}[2J\u{1b}]0;pwned\u{7}";
    let envelope = identity(0).seal("alice", "carol", &carol_key, text).unwrap();
    alice.send(&ClientMessage::Send { envelope });
    carol.wait_for(Stream::Out, "[alice] line one");
    carol.wait_for(Stream::Out, "  line two \\x1b[2J\\x1b]0;pwned\\x07");
    // A message for dave, relayed to everyone: carol sees only that it exists.
    let envelope = identity(0).seal("alice", "dave", &peer_key(identity(3)), "for dave").unwrap();
    alice.send(&ClientMessage::Send { envelope });
    let line = carol.wait_for(Stream::Out, "sealed message from alice to dave");
    assert!(line.ends_with("bytes): not for me, cannot decrypt"), "{line}");

    alice.send(&ClientMessage::Quit);
    carol.wait_for(Stream::Out, "alice left (quit)");
    assert_eq!(carol.finish(), 0);
    assert!(!carol.stdout.iter().any(|l| l.contains('\u{1b}')), "an escape reached the terminal");
}

#[test]
fn the_client_exits_one_when_the_server_goes_away() {
    let mut server = TestServer::with_defaults();
    let mut alice = client(&server, "alice");
    alice.wait_for(Stream::Out, "online: nobody else yet");
    server.stop();
    alice.wait_for(Stream::Err, "error: the server closed");
    assert_eq!(alice.finish(), 1);
}

#[test]
fn usage_errors_exit_two() {
    let mut bad = Process::start(&["client", "--display", "nonsense", "--bogus"]);
    assert_eq!(bad.finish(), 2);
    let mut bad = Process::start(&["server", "--port", "99999"]);
    assert_eq!(bad.finish(), 2);
}

#[test]
fn an_identity_file_keeps_the_fingerprint_and_remembers_peers_across_runs() {
    let dir = std::env::temp_dir().join(format!("ciphercast-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("alice.pem");
    let key_arg = key_file.to_str().unwrap();
    let server = TestServer::with_defaults();
    let fingerprint_of = |process: &Process| {
        process.stdout.iter().find(|l| l.starts_with("Your fingerprint: ")).cloned().expect("fingerprint line")
    };

    // First run: the key file is made, bob's key is trusted on first use.
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let mut first =
        Process::start(&["client", "--server", &server.addr.to_string(), "--name", "alice", "--identity", key_arg]);
    first.wait_for(Stream::Out, &format!("new key for bob: {}", identity(1).fingerprint()));
    assert_eq!(first.finish(), 0);
    assert!(std::fs::read_to_string(dir.join("alice.pem.known_peers")).unwrap().starts_with("bob "));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // bob comes back with another key.
    bob.send(&ClientMessage::Quit);
    bob.recv_until_closed();
    let (_bob, _) = TestClient::join(server.addr, "bob", identity(4));

    // Second run: same fingerprint, and the changed key is flagged.
    let mut second =
        Process::start(&["client", "--server", &server.addr.to_string(), "--name", "alice", "--identity", key_arg]);
    second.wait_for(
        Stream::Out,
        &format!("warning: KEY CHANGED for bob: was {}, now {}", identity(1).fingerprint(), identity(4).fingerprint()),
    );
    second.type_text("1\nbob\ny\nhello new bob\n");
    second.wait_for(Stream::Out, "Send anyway? [y/N]: ");
    second.wait_for(Stream::Out, "sent to bob");
    assert_eq!(second.finish(), 0);
    assert_eq!(fingerprint_of(&first), fingerprint_of(&second));
    // Accepted: the new key is now the trusted one.
    let known = std::fs::read_to_string(dir.join("alice.pem.known_peers")).unwrap();
    assert_eq!(known, format!("bob {}\n", identity(4).fingerprint()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_flags_the_key_is_kept_per_name_and_a_swapped_peer_key_is_noticed() {
    let config = support::fresh_config_dir();
    let server = TestServer::with_defaults();
    let address = server.addr.to_string();
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["client", "--server", &address, "--name", name];
        args.extend_from_slice(extra);
        Process::start_command(
            std::process::Command::new(env!("CARGO_BIN_EXE_ciphercast")).args(&args).env("XDG_CONFIG_HOME", &config),
        )
    };
    let fingerprint_of = |process: &Process| {
        process.stdout.iter().find(|l| l.starts_with("Your fingerprint: ")).cloned().expect("fingerprint line")
    };

    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    let mut first = run("alice", &[]);
    first.wait_for(Stream::Out, &format!("new key for bob: {}", identity(1).fingerprint()));
    assert_eq!(first.finish(), 0);
    let store = config.join("ciphercast");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&store).unwrap().permissions().mode() & 0o777, 0o700);
        for file in std::fs::read_dir(&store).unwrap().flatten() {
            let mode = file.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{:?}: the key and the known peers are private", file.file_name());
        }
    }

    // The server hands out another key for bob between the two runs.
    bob.send(&ClientMessage::Quit);
    bob.recv_until_closed();
    let (_bob, _) = TestClient::join(server.addr, "bob", identity(4));
    let mut second = run("alice", &[]);
    second.wait_for(Stream::Out, "warning: KEY CHANGED for bob");
    assert_eq!(second.finish(), 0);
    assert_eq!(fingerprint_of(&first), fingerprint_of(&second), "the same alice on both runs");

    // Another name is another key; --ephemeral is a fresh key and writes nothing.
    let mut carol = run("carol", &[]);
    assert_eq!(carol.finish(), 0);
    assert_ne!(fingerprint_of(&carol), fingerprint_of(&first));
    let files = || std::fs::read_dir(&store).unwrap().count();
    let before = files();
    let mut ephemeral = run("dave", &["--ephemeral"]);
    assert_eq!(ephemeral.finish(), 0);
    let mut again = run("dave", &["--ephemeral"]);
    assert_eq!(again.finish(), 0);
    assert_ne!(fingerprint_of(&ephemeral), fingerprint_of(&again));
    assert_eq!(files(), before, "--ephemeral wrote nothing");
}

#[test]
fn a_server_that_never_answers_the_hello_is_reported_as_such() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut client = Process::start(&["client", "--server", &address, "--name", "alice", "--ephemeral"]);
    // Accept, then say nothing (the socket stays open until the test ends).
    let (_silent, _) = listener.accept().unwrap();
    let line = client.wait_for(Stream::Err, "did not answer");
    assert!(line.contains(&format!("the server at {address} did not answer for 15 s")), "{line}");
    assert_eq!(client.finish(), 1);
}
