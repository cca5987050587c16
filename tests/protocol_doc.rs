//! docs/PROTOCOL.md stays exact: every message type the code can send or
//! receive appears there with an example. The matches below have no
//! wildcard, so adding a message without listing it here does not compile.

use ciphercast::shared::message::{ClientMessage, Envelope, LeaveReason, RefusalCode, ServerMessage};
use ciphercast::shared::video::{EndReason, Pace, PlayState};

fn client_examples() -> Vec<ClientMessage> {
    let all = vec![
        ClientMessage::Hello { version: 1, name: "a".into(), public_key: "k".into() },
        ClientMessage::Send { envelope: envelope() },
        ClientMessage::Quit,
        ClientMessage::ListVideos,
        ClientMessage::Play { video: "v".into(), pace: Pace::Native, start: None, plan: None },
        ClientMessage::Stop { stream: 1 },
        ClientMessage::Pause { stream: 1 },
        ClientMessage::Resume { stream: 1 },
        ClientMessage::Seek { stream: 1, frame: 150 },
    ];
    for message in &all {
        match message {
            ClientMessage::Hello { .. }
            | ClientMessage::Send { .. }
            | ClientMessage::Quit
            | ClientMessage::ListVideos
            | ClientMessage::Play { .. }
            | ClientMessage::Stop { .. }
            | ClientMessage::Pause { .. }
            | ClientMessage::Resume { .. }
            | ClientMessage::Seek { .. } => {}
        }
    }
    all
}

fn server_examples() -> Vec<ServerMessage> {
    let all = vec![
        ServerMessage::Welcome { version: 1, name: "a".into(), peers: vec![] },
        ServerMessage::Refused { code: RefusalCode::NameTaken, reason: "r".into() },
        ServerMessage::PeerJoined { name: "a".into(), public_key: "k".into() },
        ServerMessage::PeerLeft { name: "a".into(), reason: LeaveReason::Quit },
        ServerMessage::Sealed { from: "a".into(), envelope: envelope() },
        ServerMessage::Error { message: "m".into() },
        ServerMessage::Goodbye,
        ServerMessage::ServerClosing { reason: "r".into() },
        ServerMessage::VideoList { videos: vec![] },
        ServerMessage::StreamStart {
            stream: 1,
            video: "v".into(),
            fps: 30.0,
            frames: 1,
            plan: vec![],
            renditions: vec!["240p".into()],
        },
        ServerMessage::StreamState {
            stream: 1,
            state: PlayState::Paused,
            next_frame: 150,
            resolution: None,
            measured_kbps: None,
        },
        ServerMessage::StreamEnd { stream: 1, reason: EndReason::Finished, frames: 1, total: Some(1), message: None },
    ];
    for message in &all {
        match message {
            ServerMessage::Welcome { .. }
            | ServerMessage::Refused { .. }
            | ServerMessage::PeerJoined { .. }
            | ServerMessage::PeerLeft { .. }
            | ServerMessage::Sealed { .. }
            | ServerMessage::Error { .. }
            | ServerMessage::Goodbye
            | ServerMessage::ServerClosing { .. }
            | ServerMessage::VideoList { .. }
            | ServerMessage::StreamStart { .. }
            | ServerMessage::StreamState { .. }
            | ServerMessage::StreamEnd { .. } => {}
        }
    }
    all
}

fn envelope() -> Envelope {
    Envelope {
        id: "1".into(),
        to: "b".into(),
        sent_at: 0,
        wrapped_key: vec![],
        nonce: vec![0; 12],
        ciphertext: vec![],
        signature: vec![],
    }
}

fn type_of<M: serde::Serialize>(message: &M) -> String {
    let value = serde_json::to_value(message).unwrap();
    value["type"].as_str().unwrap().to_string()
}

#[test]
fn every_message_type_is_documented_with_an_example() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    let types: Vec<String> =
        client_examples().iter().map(type_of).chain(server_examples().iter().map(type_of)).collect();
    assert_eq!(types.len(), 21);
    for kind in types {
        assert!(doc.contains(&format!("**`{kind}`**")), "docs/PROTOCOL.md has no section for `{kind}`");
        assert!(doc.contains(&format!("{{\"type\":\"{kind}\"")), "docs/PROTOCOL.md has no example of `{kind}`");
    }
}
