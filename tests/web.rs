//! The instructor's web page (`server --web`), end to end: a real browser
//! (headless Chromium) loads it while three clients are joined, a sealed
//! message has been relayed and a stream plays; plain HTTP checks the
//! token, unknown paths, a browser that never reads its event stream, and
//! that page loads leave no thread behind.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ciphercast::server::{Config, WebOptions};
use ciphercast::shared::message::{ClientMessage, ServerMessage};
use ciphercast::shared::video::Pace;
use support::{TestClient, TestServer, clips, fake_envelope, identity, peer_key, wait_until};

/// A server with the web page on 127.0.0.1, port chosen by the OS; its address.
fn server_with_page(token: Option<&str>, videos: Option<std::path::PathBuf>) -> (TestServer, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let page = listener.local_addr().unwrap();
    let web = WebOptions { listener: Arc::new(listener), token: token.map(str::to_string), show_addresses: false };
    let config = Config { videos: videos.unwrap_or_else(|| clips(2)), web: Some(web), ..Config::default() };
    (TestServer::start(config), page)
}

/// `GET path`: the status code and the body.
fn get(page: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(page).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {page}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

/// An event stream read by a thread into `seen`, until the server ends it.
fn follow(page: SocketAddr, path: &str) -> (Arc<Mutex<String>>, thread::JoinHandle<()>) {
    let mut stream = TcpStream::connect(page).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {page}\r\n\r\n").unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let writing = Arc::clone(&seen);
    let reader = thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            writing.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    (seen, reader)
}

#[test]
fn a_browser_shows_who_is_online_the_ciphertext_flowing_and_the_streams_never_a_plaintext() {
    let (mut server, page) = server_with_page(None, Some(clips(20)));
    let names = ["alice", "bob", "carol"];
    let mut clients: Vec<TestClient> =
        names.iter().enumerate().map(|(i, name)| TestClient::join(server.addr, name, identity(i)).0).collect();
    let plaintext = "the answer to question three is forty-two";
    let envelope = identity(0).seal("alice", "bob", &peer_key(identity(1)), plaintext).unwrap();
    let sealed_bytes = envelope.sealed_len();
    clients[0].send(&ClientMessage::Send { envelope });
    clients[1].recv_until("the sealed message", |m| matches!(m, ServerMessage::Sealed { .. }));
    let (events, reader) = follow(page, "/events");
    clients[2].send(&ClientMessage::Play { video: "Video_1".into(), pace: Pace::Native, start: None, plan: None });
    wait_until("the stream on the event stream", || events.lock().unwrap().contains("\"type\":\"stream\""));

    let url = format!("http://{page}/");
    let browser = |extra: &[&str]| {
        let output = Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,720"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium (make deps installs it)");
        assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dom = browser(&["--dump-dom"]);
    let roster = dom.split("id=\"roster\"").nth(1).expect("the roster table");
    for (i, name) in names.iter().enumerate() {
        assert!(roster.contains(&format!("<td class=\"name\">{name}</td>")), "{name} is not in the roster:\n{dom}");
        let fingerprint = identity(i).fingerprint().to_string();
        assert!(roster.contains(&fingerprint), "{name}'s fingerprint {fingerprint} is not shown:\n{dom}");
    }
    let message = dom.split("<li class=\"message\">").nth(1).expect("a message row");
    assert!(message.contains("alice") && message.contains("<mark class=\"to\">bob</mark>"), "{message}");
    assert!(message.contains("<span class=\"bystander\">carol</span>"), "carol received it too: {message}");
    assert!(message.contains("(fan-out 2)"), "{message}");
    assert!(message.contains(&format!("{sealed_bytes} B sealed")), "its size: {message}");
    let stream = dom.split("<tr class=\"stream\">").nth(1).expect("a stream row");
    assert!(stream.contains("<td>carol</td>") && stream.contains("<td class=\"resolution\">24p</td>"), "{stream}");
    // A screenshot for people to look at.
    let shot = concat!(env!("CARGO_MANIFEST_DIR"), "/target/web-page.png");
    browser(&[&format!("--screenshot={shot}")]);
    assert!(std::fs::metadata(shot).is_ok_and(|m| m.len() > 10_000), "no screenshot at {shot}");

    // Nothing the page or its events carry holds the plaintext.
    let (_, state) = get(page, "/state");
    for (what, text) in [("the DOM", &dom), ("/state", &state), ("the event stream", &*events.lock().unwrap())] {
        assert!(!text.contains(plaintext) && !text.contains("forty-two"), "the plaintext is in {what}");
    }
    server.stop();
    support::join_bounded("the event stream's reader", reader);
}

#[test]
fn a_wrong_token_is_forbidden_and_an_unknown_path_not_found() {
    let (_server, page) = server_with_page(Some("s3cret"), None);
    assert_eq!(get(page, "/").0, 403, "no token");
    assert_eq!(get(page, "/?token=guess").0, 403, "a wrong token");
    assert_eq!(get(page, "/events?token=s3cre").0, 403);
    assert_eq!(get(page, "/metrics").0, 403);
    let (status, body) = get(page, "/?token=s3cret");
    assert_eq!(status, 200);
    assert!(body.contains("<title>ciphercast"), "{body}");
    assert_eq!(get(page, "/nothing-here?token=s3cret").0, 404);
    let (status, metrics) = get(page, "/metrics?token=s3cret");
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE ciphercast_clients gauge\nciphercast_clients 0\n"), "{metrics}");
}

#[test]
fn a_browser_that_never_reads_its_events_delays_no_relay_and_no_other_browser() {
    let (mut server, page) = server_with_page(None, None);
    let (mut alice, _) = TestClient::join(server.addr, "alice", identity(0));
    let (mut bob, _) = TestClient::join(server.addr, "bob", identity(1));
    // One browser asks for the events and never reads them; another reads.
    let mut stalled = TcpStream::connect(page).unwrap();
    write!(stalled, "GET /events HTTP/1.1\r\nHost: {page}\r\n\r\n").unwrap();
    let (events, reader) = follow(page, "/events");
    wait_until("both browsers watching", || get(page, "/metrics").1.contains("ciphercast_web_viewers 2\n"));

    // Each relay is an event: far more than the stalled browser's channel
    // and socket hold.
    let count = 5000;
    for i in 0..count {
        alice.send(&ClientMessage::Send { envelope: fake_envelope("bob", format!("m{i}"), 64) });
    }
    for _ in 0..count {
        bob.recv_until("every relayed message", |m| matches!(m, ServerMessage::Sealed { .. }));
    }
    let metrics = get(page, "/metrics").1;
    let skipped: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("ciphercast_web_events_skipped_total "))
        .and_then(|n| n.parse().ok())
        .expect("the skipped counter");
    assert!(skipped > 0, "the stalled browser lost nothing? {metrics}");
    // The browser that reads still follows: it sees a join after the flood.
    let (_carol, _) = TestClient::join(server.addr, "carol", identity(2));
    wait_until("the reading browser sees carol join", || events.lock().unwrap().contains("\"name\":\"carol\""));
    drop(stalled);
    server.stop();
    support::join_bounded("the event stream's reader", reader);
}

/// Threads of this process named `name` (Linux).
fn threads_named(name: &str) -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap();
    tasks
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name))
        .count()
}

#[test]
fn a_hundred_page_loads_in_a_row_leave_no_thread_behind() {
    let (_server, page) = server_with_page(None, None);
    // The page's connection threads are named after its port.
    let name = format!("web-{}", page.port());
    assert_eq!(threads_named(&name), 0);
    for _ in 0..100 {
        let (status, body) = get(page, "/");
        assert_eq!(status, 200);
        assert!(body.contains("id=\"snapshot\""));
    }
    wait_until("every page load's thread ended", || threads_named(&name) == 0);
}

#[test]
fn a_request_trickled_a_byte_at_a_time_does_not_keep_its_connection() {
    let (_server, page) = server_with_page(None, None);
    let mut stream = TcpStream::connect(page).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    // One byte a second, never the end of the head: the server closes it
    // once the head's time is up (5 s in all), not after a quiet 5 s.
    let mut closed = false;
    for byte in b"GET /state HTTP/1.1\r\nHost: x".iter().take(12) {
        if stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 64];
        match stream.read(&mut buffer) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            // Closed (or answered: the head was never complete, so only an error could come).
            _ => {
                closed = true;
                break;
            }
        }
        thread::sleep(Duration::from_millis(900));
    }
    assert!(closed, "a request trickled over 12 s kept its connection");
}
