//! The README's piped example runs as written: `printf '…' | ciphercast
//! client --name alice`, with this build's binary standing in for the
//! installed `ciphercast`, against a server with the addressee online — who
//! prints the message. The example is read from README.md itself, so the
//! README cannot drift from the client.

mod support;

use support::{Process, Stream, TestServer};

/// The README's line that pipes a script into the client, split into the
/// `printf …` part and the `ciphercast …` arguments.
fn readme_example() -> (String, String) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let line = readme
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("printf '") && line.contains("| ciphercast client"))
        .expect("README.md has no `printf '…' | ciphercast client …` example");
    let (script, args) = line.split_once("| ciphercast ").expect("a pipe into ciphercast");
    (script.to_string(), args.to_string())
}

/// The lines the example's printf types: menu choice, recipient, message, …
fn typed_lines(script: &str) -> Vec<String> {
    let quoted = script.split('\'').nth(1).expect("printf's quoted format");
    quoted.split("\\n").map(str::to_string).collect()
}

#[test]
fn the_readme_piped_example_runs_as_written_and_the_addressee_reads_it() {
    let (script, args) = readme_example();
    let typed = typed_lines(&script);
    let (recipient, message) = (&typed[1], &typed[2]);
    let sender = args.split_whitespace().skip_while(|a| *a != "--name").nth(1).expect("the example names its client");
    let config = std::env::temp_dir().join(format!("ciphercast-readme-{}", std::process::id()));

    let server = TestServer::with_defaults();
    let mut addressee = Process::start(&["client", "--server", &server.addr.to_string(), "--name", recipient]);
    addressee.wait_for(Stream::Out, "Connected to");
    // The example's own words, run by a shell; only the binary's path and
    // the test server's address are added.
    let line = format!("{script}| '{}' {args} --server {}", env!("CARGO_BIN_EXE_ciphercast"), server.addr);
    let mut example =
        Process::start_command(std::process::Command::new("sh").args(["-c", &line]).env("XDG_CONFIG_HOME", &config));
    assert_eq!(example.finish(), 0, "the example failed: {:?} {:?}", example.stdout, example.stderr);
    assert!(example.stdout.iter().any(|l| l.contains(&format!("sent to {recipient}"))), "{:?}", example.stdout);

    addressee.wait_for(Stream::Out, &format!("[{sender}] {message}"));
    addressee.type_text("3\n");
    assert_eq!(addressee.finish(), 0);
    let _ = std::fs::remove_dir_all(&config);
}
