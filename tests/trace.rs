//! `--trace`: a line per frame on both sides, with summaries and never the
//! plaintext.

mod support;

use support::{Process, Stream, clips};

#[test]
fn trace_shows_every_frame_of_a_message_and_a_video_but_no_plaintext() {
    let videos = clips(2);
    let (mut server, address) = Process::server(&["--trace", "--videos", videos.to_str().unwrap()]);
    let address = address.to_string();

    let mut bob = Process::start(&[
        "client",
        "--server",
        &address,
        "--name",
        "bob",
        "--trace",
        "--display",
        "none",
        "--pace",
        "none",
    ]);
    bob.wait_for(Stream::Out, "online: nobody else yet");
    let mut alice = Process::start(&["client", "--server", &address, "--name", "alice", "--trace"]);
    alice.wait_for(Stream::Out, "online: bob");
    alice.type_text("1\nbob\nthe secret plan\n");
    alice.wait_for(Stream::Out, "sent to bob");
    bob.wait_for(Stream::Out, "[alice] the secret plan");

    // alice's side: her hello and her sealed message going out.
    alice.wait_for(Stream::Err, &format!("trace: send {address} control"));
    let sent = alice.wait_for(Stream::Err, "B send to=bob id=");
    assert!(sent.contains("ciphertext="), "{sent}");
    // The server: the message in from alice, relayed out to bob.
    server.wait_for(Stream::Err, "trace: recv 127.0.0.1:");
    server.wait_for(Stream::Err, "send to=bob");
    let relayed = server.wait_for(Stream::Err, "sealed from=alice to=bob");
    assert!(relayed.starts_with("trace: send "), "{relayed}");
    bob.wait_for(Stream::Err, "sealed from=alice to=bob");

    // A video, traced frame by frame.
    bob.type_text("2\n1\n");
    bob.wait_for(Stream::Err, "control");
    bob.wait_for(Stream::Err, "stream_start stream=1 video=Video_1 frames=20");
    let frame = bob.wait_for(Stream::Err, "stream=1 seq=0 24p jpeg=");
    assert!(frame.starts_with(&format!("trace: recv {address} video ")), "{frame}");
    bob.wait_for(Stream::Out, "summary: video=Video_1 frames=20/20");
    server.wait_for(Stream::Err, "stream=1 seq=19 96p");

    assert_eq!(alice.finish(), 0);
    assert_eq!(bob.finish(), 0);
    server.child.kill().unwrap();
    let _ = server.finish();
    for (who, lines) in [("alice", &alice.stderr), ("bob", &bob.stderr), ("server", &server.stderr)] {
        assert!(!lines.iter().any(|l| l.contains("secret plan")), "{who}'s trace shows the plaintext");
    }
}
