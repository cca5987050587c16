//! `make demo`'s script, started detached on a private tmux socket: four
//! panes, the server sees the three clients join, and the script says
//! where the server's live page is (and the page answers there).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::clips;

#[test]
fn the_demo_opens_four_panes_with_three_clients_joined() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tmux is missing: `make deps` installs it");
        eprintln!("skipped: tmux is not installed (`make deps` installs it)");
        return;
    }
    let socket = format!("ciphercast-test-{}", std::process::id());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tmux = |args: &[&str]| Command::new("tmux").arg("-L").arg(&socket).args(args).output().expect("tmux");
    let started = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/demo.sh"))
        .env("BIN", env!("CARGO_BIN_EXE_ciphercast"))
        .env("PORT", port.to_string())
        .env("VIDEOS", clips(2))
        .env("DEMO_TMUX_SOCKET", &socket)
        .env("DEMO_DETACHED", "1")
        .env("XDG_CONFIG_HOME", support::fresh_config_dir())
        .output()
        .expect("run tools/demo.sh");
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));

    let deadline = Instant::now() + support::TIMEOUT;
    let (mut panes, mut server) = (String::new(), String::new());
    while Instant::now() < deadline {
        panes = String::from_utf8_lossy(&tmux(&["list-panes", "-t", "ciphercast", "-F", "#{pane_index}"]).stdout)
            .into_owned();
        server = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "ciphercast:0.0"]).stdout).into_owned();
        if ["alice joined", "bob joined", "carol joined"].iter().all(|j| server.contains(j)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let carol = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "ciphercast:0.3"]).stdout).into_owned();
    let said = String::from_utf8_lossy(&started.stdout).into_owned();
    let page = said.lines().find_map(|line| line.strip_prefix("the server's live page: http://")).map(str::to_string);
    let roster = page.as_deref().map(|page| {
        let address = page.trim_end_matches('/');
        let mut stream = std::net::TcpStream::connect(address).expect("the page's address");
        stream.set_read_timeout(Some(support::TIMEOUT)).unwrap();
        use std::io::{Read, Write};
        write!(stream, "GET /state HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    });
    tmux(&["kill-server"]);
    let roster = roster.unwrap_or_else(|| panic!("the script did not say where the page is:\n{said}"));
    for name in ["alice", "bob", "carol"] {
        assert!(roster.contains(&format!("\"name\":\"{name}\"")), "the page's state:\n{roster}");
    }
    assert_eq!(panes.lines().count(), 4, "panes: {panes:?}");
    for name in ["alice", "bob", "carol"] {
        assert!(server.contains(&format!("{name} joined")), "server pane:\n{server}");
    }
    assert!(carol.contains("Connected to") && carol.contains("online: alice, bob"), "carol's pane:\n{carol}");
}
