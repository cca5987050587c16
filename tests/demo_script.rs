//! `make demo-script`: the classroom story without a person, narrated step
//! by step (run with `--nocapture` to see it) and checked at every step.
//!
//! Three clients join; alice sends bob a secret; bob reads it; carol sees
//! only ciphertext; bob watches Video_2 headless while carol messages him;
//! carol quits.

mod support;

use std::net::SocketAddr;

use support::{Process, Stream};

fn narrate(step: &str) {
    println!("\n== {step}");
}

/// Waits for a line from `who` and shows it as the class would see it.
fn expect(who: &str, process: &mut Process, text: &str) -> String {
    let line = process.wait_for(Stream::Out, text);
    println!("   {who:>6} | {line}");
    line
}

fn client(server: SocketAddr, name: &str) -> Process {
    Process::start(&["client", "--server", &server.to_string(), "--name", name, "--display", "none"])
}

#[test]
fn the_whole_story() {
    narrate("The server generates its videos (Video_1 and Video_2 at 240p, 720p and 1440p) and starts");
    let videos = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-script-videos");
    let mut generate = Process::start(&[
        "videos",
        "--out",
        videos.to_str().unwrap(),
        "--seconds",
        "3",
        "--fps",
        "10",
        "--heights",
        "240,720,1440",
    ]);
    assert_eq!(generate.finish(), 0, "{:#?}", generate.stderr);
    let (mut server, address) = Process::server(&["--videos", videos.to_str().unwrap()]);
    println!("   server | listening on {address}");

    narrate("1. Three clients join; each prints its fingerprint and who is online");
    let mut alice = client(address, "alice");
    expect("alice", &mut alice, "Your fingerprint: ");
    expect("alice", &mut alice, "online: nobody else yet");
    let mut bob = client(address, "bob");
    expect("bob", &mut bob, "online: alice");
    let mut carol = client(address, "carol");
    expect("carol", &mut carol, "online: alice, bob");
    expect("alice", &mut alice, "carol joined");

    narrate("2. alice sends bob a secret: sealed with bob's public key, signed with hers");
    alice.type_text("1\nbob\nthe exam is on Friday\n");
    expect("alice", &mut alice, "Available clients: bob, carol");
    expect("alice", &mut alice, "sent to bob");

    narrate("3. bob reads it: only his private key unwraps the message key");
    expect("bob", &mut bob, "[alice] the exam is on Friday");

    narrate("4. carol received the same envelope (broadcast relay), and sees only that it exists");
    let sealed = expect("carol", &mut carol, "sealed message from alice to bob");
    assert!(sealed.ends_with("not for me, cannot decrypt"));
    assert!(!carol.stdout.iter().any(|l| l.contains("the exam is on Friday")));

    narrate("5. bob watches Video_2 (headless) while carol messages him");
    bob.type_text("2\n");
    expect("bob", &mut bob, "  2. Video_2 (240p, 720p, 1440p)");
    bob.type_text("Video_2\n");
    carol.type_text("1\nbob\npopcorn?\n");
    expect("carol", &mut carol, "sent to bob");
    expect("bob", &mut bob, "[carol] popcorn?");
    let summary = expect("bob", &mut bob, "summary: video=Video_2");
    assert!(summary.contains("frames=30/30 resolutions=240p,720p,1440p"), "{summary}");
    let position = |p: &Process, text: &str| p.stdout.iter().position(|l| l.contains(text)).unwrap();
    assert!(position(&bob, "[carol] popcorn?") < position(&bob, "summary:"), "the message arrived after the video");

    narrate("6. carol quits; the others are told");
    carol.type_text("3\n");
    expect("carol", &mut carol, "bye");
    assert_eq!(carol.finish(), 0);
    expect("alice", &mut alice, "carol left (quit)");
    expect("bob", &mut bob, "carol left (quit)");

    narrate("The end: alice and bob close their input; the server stops");
    assert_eq!(alice.finish(), 0);
    assert_eq!(bob.finish(), 0);
    server.child.kill().unwrap();
    let _ = std::fs::remove_dir_all(&videos);
}
