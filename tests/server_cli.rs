//! The server binary: port errors, and a clean stop on SIGTERM.

mod support;

use ciphercast::shared::message::ServerMessage;
use support::{Process, TestClient, identity};

#[test]
fn a_port_in_use_is_an_error_with_exit_status_one() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut server = Process::start(&["server", "--port", &port]);
    assert_eq!(server.finish(), 1);
    let error = server.stderr.join("\n");
    assert!(error.contains(&format!("cannot listen on 127.0.0.1:{port}")) && error.contains("--port"), "{error}");
}

#[test]
fn sigterm_tells_the_clients_and_exits_zero() {
    let (mut server, address) = Process::server(&[]);
    let (mut alice, _) = TestClient::join(address, "alice", identity(0));
    let status =
        std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().expect("run kill");
    assert!(status.success());
    let rest = alice.recv_until_closed();
    assert!(rest.iter().any(|m| matches!(m, ServerMessage::ServerClosing { .. })), "{rest:?}");
    assert_eq!(server.finish(), 0, "{:#?}", server.stderr);
}
