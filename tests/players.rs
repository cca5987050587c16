//! The players as a person sees them: a real OpenCV window under Xvfb, and
//! the terminal renderer under a pseudo-terminal. In CI (`CI` set) a missing
//! tool fails the test; elsewhere the test says what is missing and passes.

mod support;

use std::process::{Command, Stdio};

use ciphercast::server::Config;
use support::{Process, Stream, TestServer, clips};

/// Whether `tool` is installed; in CI its absence is a failure.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is missing: `make deps` installs it");
        eprintln!("skipped: {tool} is not installed (`make deps` installs it)");
    }
    found
}

/// What a shell `script` run under Xvfb printed, and what it left in the
/// file `$OUT` (the client's output), and xvfb-run's stderr.
struct XvfbRun {
    stdout: String,
    client: String,
    stderr: String,
}

fn under_xvfb(script: &str, tag: &str) -> XvfbRun {
    let out = std::env::temp_dir().join(format!("ciphercast-{tag}-{}.txt", std::process::id()));
    let result = Command::new("timeout")
        .args(["60", "xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "sh", "-c", script])
        .env("OUT", &out)
        .env("XDG_CONFIG_HOME", support::fresh_config_dir())
        .output()
        .expect("run xvfb-run");
    let client = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    // (xvfb-run's own exit status is not checked: it sometimes fails to
    // remove its temporary directory after a perfectly good run.)
    XvfbRun {
        stdout: String::from_utf8_lossy(&result.stdout).into_owned(),
        client,
        stderr: String::from_utf8_lossy(&result.stderr).into_owned(),
    }
}

#[test]
fn the_window_player_shows_a_window_titled_with_the_current_resolution() {
    if !(have("xvfb-run") && have("xwininfo")) {
        return;
    }
    let server = TestServer::start(Config { videos: clips(2), ..Config::default() });
    let client = format!(
        "printf '2\\n1\\n' | '{}' client --server {} --name watcher --display window",
        env!("CARGO_BIN_EXE_ciphercast"),
        server.addr
    );
    // Start the client, then look for its window while the video plays.
    let script = format!(
        "{client} > \"$OUT\" 2>&1 & pid=$!\n\
         for i in $(seq 1 300); do\n\
           xwininfo -root -tree | grep -o 'ciphercast — Video_1 — [0-9]*p' && break\n\
           sleep 0.02\n\
         done\n\
         wait $pid"
    );
    let XvfbRun { stdout: titles, client: client_output, stderr } = under_xvfb(&script, "window");
    assert!(
        ["24p", "48p", "96p"].iter().any(|r| titles.contains(&format!("ciphercast — Video_1 — {r}"))),
        "no window titled with a resolution; xwininfo saw: {titles:?}\nclient: {client_output}\nxvfb-run: {stderr}"
    );
    assert!(client_output.contains("summary: video=Video_1 frames=20/20 resolutions=24p,48p,96p"), "{client_output}");
}

#[test]
fn the_terminal_player_draws_true_colour_half_blocks() {
    if !have("script") {
        return;
    }
    let server = TestServer::start(Config { videos: clips(2), ..Config::default() });
    let command = format!(
        "'{}' client --server {} --name term --display terminal",
        env!("CARGO_BIN_EXE_ciphercast"),
        server.addr
    );
    // `script` gives the client a pseudo-terminal and copies our input to it.
    let mut viewer = Process::start_command(Command::new("script").args(["-qfec", &command, "/dev/null"]));
    viewer.wait_for(Stream::Out, "online: nobody else yet");
    viewer.type_text("2\r");
    viewer.wait_for(Stream::Out, "2. Video_2");
    viewer.type_text("1\r");
    let summary = viewer.wait_for(Stream::Out, "summary: video=Video_1");
    assert!(summary.contains("frames=20/20 resolutions=24p,48p,96p"), "{summary}");
    let screen = viewer.stdout.join("\n");
    assert!(screen.contains("\u{1b}[38;2;") && screen.contains("\u{1b}[48;2;"), "no 24-bit colour escapes");
    assert!(screen.contains('▀'), "no half-block characters");
    viewer.type_text("3\r");
    assert_eq!(viewer.finish(), 0);
}

#[test]
fn the_window_player_pauses_resumes_and_seeks_with_keys() {
    if !(have("xvfb-run") && have("xdotool")) {
        return;
    }
    // 60 frames at 10 fps.
    let server = TestServer::start(Config { videos: support::clips_at(6, &[24, 48]), ..Config::default() });
    let client = format!(
        "printf '2\\n2\\n' | '{}' client --server {} --name keys --display window --trace",
        env!("CARGO_BIN_EXE_ciphercast"),
        server.addr
    );
    // Press space, space and → in the window once it shows, a moment apart.
    // (End of input does not end the playback: the client quits after it.)
    let script = format!(
        "{client} > \"$OUT\" 2>&1 & pid=$!\n\
         for i in $(seq 1 300); do\n\
           window=$(xdotool search --name 'ciphercast — Video_2' | head -1)\n\
           [ -n \"$window\" ] && break\n\
           sleep 0.02\n\
         done\n\
         for key in space space Right; do sleep 0.5; xdotool key --window \"$window\" $key; done\n\
         wait $pid"
    );
    let XvfbRun { client: output, stderr, .. } = under_xvfb(&script, "window-keys");
    let states: Vec<&str> = output.lines().filter(|l| l.contains("stream_state")).collect();
    assert!(states.len() >= 3, "the keys were not answered:\n{output}\n{stderr}");
    assert!(states[0].contains("state=paused") && states[1].contains("state=playing"), "{states:#?}");
    assert!(output.contains("seek stream=1 frame="), "→ sent no seek:\n{output}");
    assert!(output.contains("summary: video=Video_2"), "no summary:\n{output}");
}

#[test]
fn the_terminal_player_pauses_resumes_and_seeks_with_keys() {
    if !have("script") {
        return;
    }
    // 50 frames at 10 fps.
    let server = TestServer::start(Config { videos: support::clips_at(5, &[24, 48]), ..Config::default() });
    let command = format!(
        "'{}' client --server {} --name keys --display terminal --trace",
        env!("CARGO_BIN_EXE_ciphercast"),
        server.addr
    );
    // The trace goes to the same pseudo-terminal, a line per message.
    let mut viewer = Process::start_command(Command::new("script").args(["-qfec", &command, "/dev/null"]));
    viewer.wait_for(Stream::Out, "online: nobody else yet");
    viewer.type_text("2\r");
    viewer.wait_for(Stream::Out, "2. Video_2");
    viewer.type_text("2\r");
    viewer.wait_for(Stream::Out, "seq=2 ");
    viewer.type_text(" ");
    viewer.wait_for_next(Stream::Out, "state=paused");
    viewer.type_text(" ");
    viewer.wait_for_next(Stream::Out, "state=playing");
    // → seeks 5 s forward: past the end here, so to the last frame.
    viewer.type_text("\x1b[C");
    viewer.wait_for_next(Stream::Out, "seek stream=1 frame=49");
    viewer.wait_for_next(Stream::Out, "next_frame=49");
    let summary = viewer.wait_for(Stream::Out, "summary: video=Video_2");
    assert!(summary.contains("/50 "), "{summary}");
    viewer.type_text("3\r");
    assert_eq!(viewer.finish(), 0);
}

#[test]
fn events_are_coloured_on_a_terminal_unless_no_color_is_set() {
    if !have("script") {
        return;
    }
    let server = TestServer::start(Config::default());
    for (no_color, name) in [(false, "tty1"), (true, "tty2")] {
        let command = format!("'{}' client --server {} --name {name}", env!("CARGO_BIN_EXE_ciphercast"), server.addr);
        let mut script = Command::new("script");
        script.args(["-qfec", &command, "/dev/null"]);
        if no_color {
            script.env("NO_COLOR", "1");
        } else {
            script.env_remove("NO_COLOR");
        }
        let mut viewer = Process::start_command(&mut script);
        viewer.wait_for(Stream::Out, "Connected to");
        let guest = format!("guest{name}");
        let (_guest, _) = support::TestClient::join(server.addr, &guest, support::identity(5));
        let line = viewer.wait_for(Stream::Out, &format!("{guest} joined"));
        assert_eq!(line.contains("\u{1b}[2m"), !no_color, "NO_COLOR={no_color}: {line:?}");
        viewer.type_text("3\r");
        assert_eq!(viewer.finish(), 0);
    }
}

#[test]
fn a_window_without_a_reachable_x_server_is_an_error_not_a_crash() {
    let server = TestServer::start(Config { videos: clips(2), ..Config::default() });
    let mut viewer = Process::start_command(
        Command::new(env!("CARGO_BIN_EXE_ciphercast"))
            .args(["client", "--server", &server.addr.to_string(), "--name", "nox", "--display", "window"])
            .env("DISPLAY", ":59"),
    );
    viewer.type_text("2\n1\n");
    viewer.wait_for(Stream::Err, "error: no X server is reachable at DISPLAY=:59; try --display terminal");
    viewer.wait_for(Stream::Out, "summary: video=Video_1");
    // Still connected and at the menu: end of input quits normally.
    assert_eq!(viewer.finish(), 0);
}
