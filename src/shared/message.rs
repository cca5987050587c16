//! Layer 2 of the protocol: frames ↔ typed messages.
//!
//! Control messages are JSON objects tagged by `"type"` (serde's internally
//! tagged enums), one per frame of kind [`FrameKind::Control`]. This module
//! does no I/O: it turns bytes into values and back, and says precisely what
//! was wrong when it cannot. `docs/PROTOCOL.md` shows every message.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::frame::{Frame, FrameError, FrameKind, encode_frame};
use super::limits::{MAX_CIPHERTEXT_BYTES, MAX_KEY_BITS};
use super::names::validate_name;
use super::video::{EndReason, Pace, PlanKind, PlanPart, PlayState};

/// What a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The first message of every connection: who I am and my public key.
    Hello {
        /// Must equal [`crate::shared::limits::PROTOCOL_VERSION`].
        version: u32,
        /// The name to join under (see [`validate_name`]).
        name: String,
        /// RSA public key, PEM SubjectPublicKeyInfo.
        public_key: String,
    },
    /// Relay this sealed message to `envelope.to`.
    Send {
        /// The sealed message; the server cannot open it.
        envelope: Envelope,
    },
    /// Leave: the server acknowledges with [`ServerMessage::Goodbye`] and tells the others.
    Quit,
    /// Ask for the video library; answered with [`ServerMessage::VideoList`].
    ListVideos,
    /// Play a video by name; answered with [`ServerMessage::StreamStart`],
    /// binary frames and [`ServerMessage::StreamEnd`] (or only the end, with
    /// reason `error`, if it cannot be played).
    Play {
        /// The video's name as listed.
        video: String,
        /// How fast to send.
        pace: Pace,
        /// The first frame to send (the plan applies from there); 0 if left out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<u32>,
        /// Which resolution each frame comes from; `thirds` if left out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<PlanKind>,
    },
    /// Stop a stream early; it ends with reason `stopped`.
    Stop {
        /// The stream's id from its start.
        stream: u32,
    },
    /// Pause a stream; answered with [`ServerMessage::StreamState`].
    Pause {
        /// The stream's id from its start.
        stream: u32,
    },
    /// Resume a paused stream; answered with [`ServerMessage::StreamState`].
    Resume {
        /// The stream's id from its start.
        stream: u32,
    },
    /// Go on from frame `frame` (kept paused if paused); answered with
    /// [`ServerMessage::StreamState`]. Past the last frame: the last frame.
    Seek {
        /// The stream's id from its start.
        stream: u32,
        /// The frame to send next.
        frame: u32,
    },
}

/// What the server sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded; `peers` is everyone else already connected.
    Welcome {
        /// The server's protocol version.
        version: u32,
        /// The name the client joined under.
        name: String,
        /// Every other connected client with its key, sorted by name.
        peers: Vec<Peer>,
    },
    /// The join was refused; the server closes the connection after this.
    Refused {
        /// Machine-readable reason.
        code: RefusalCode,
        /// Human-readable reason, e.g. `name "bob" is taken`.
        reason: String,
    },
    /// Another client joined.
    PeerJoined {
        /// Its name.
        name: Arc<str>,
        /// Its public key, PEM SubjectPublicKeyInfo.
        public_key: Arc<str>,
    },
    /// Another client left.
    PeerLeft {
        /// Its name.
        name: String,
        /// Whether it said goodbye.
        reason: LeaveReason,
    },
    /// A sealed message relayed by the server. `from` is stamped by the
    /// server from the sender's connection, never taken from the sender.
    Sealed {
        /// The sender's joined name.
        from: String,
        /// The sealed message as the sender wrote it.
        envelope: Envelope,
    },
    /// Something the client sent was wrong; the connection stays open unless
    /// a [`ServerMessage::Refused`] or a close follows.
    Error {
        /// What was wrong.
        message: String,
    },
    /// Acknowledges [`ClientMessage::Quit`]; the server closes after this.
    Goodbye,
    /// The server is shutting down; it closes every connection after this.
    ServerClosing {
        /// Why.
        reason: String,
    },
    /// The video library, read when asked.
    VideoList {
        /// Videos sorted by name.
        videos: Vec<VideoInfo>,
    },
    /// A stream begins; binary frames of this `stream` follow.
    StreamStart {
        /// Stream id, unique within the connection.
        stream: u32,
        /// The video's name.
        video: String,
        /// Frames per second (the lowest resolution's).
        fps: f64,
        /// Frames that will be sent.
        frames: u32,
        /// Which frames come from which resolution (empty with the adaptive
        /// plan, which decides as it goes).
        plan: Vec<PlanPart>,
        /// The resolutions the stream may use, lowest first (left out by
        /// servers older than the adaptive plan).
        #[serde(default)]
        renditions: Vec<String>,
    },
    /// The answer to a pause, resume or seek: where the stream stands. The
    /// next video frame of this stream has sequence number `next_frame`;
    /// frames that were queued for the viewer are dropped, not sent.
    StreamState {
        /// Stream id.
        stream: u32,
        /// Playing or paused.
        state: PlayState,
        /// The sequence number of the next frame sent.
        next_frame: u32,
        /// With the adaptive plan, announcing a switch: the resolution from
        /// `next_frame` on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolution: Option<String>,
        /// With a switch: the bytes the server got into the viewer's socket
        /// per second, lately, in kbit/s (of 1000 bits).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measured_kbps: Option<u32>,
    },
    /// A stream ended.
    StreamEnd {
        /// Stream id.
        stream: u32,
        /// Why it ended.
        reason: EndReason,
        /// Frames sent.
        frames: u32,
        /// The video's real frame count (fewer than `stream_start` announced
        /// when the last frames turned out not to decode). Left out when the
        /// stream ended before it had a plan (refused, or the file cannot be
        /// read); a message without it is read as announcing no change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u32>,
        /// What went wrong, for reason `error`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

/// One video of the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Its name, e.g. `Video_1`.
    pub name: String,
    /// Its resolution labels from lowest to highest, e.g. `["240p", "720p"]`.
    pub resolutions: Vec<String>,
    /// How much of it the server has prepared, from 0.0 to 1.0; left out by
    /// a server without a store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<f64>,
}

/// One registry entry as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The client's name.
    pub name: Arc<str>,
    /// Its public key, PEM SubjectPublicKeyInfo.
    pub public_key: Arc<str>,
}

/// Why a client left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It sent [`ClientMessage::Quit`].
    Quit,
    /// Its connection ended without a quit.
    Disconnected,
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaveReason::Quit => "quit",
            LeaveReason::Disconnected => "disconnected",
        })
    }
}

/// Machine-readable reason of a refused join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// Another connected client has this name.
    NameTaken,
    /// The name breaks the naming rules.
    InvalidName,
    /// The name looks like a connected client's (the same confusable skeleton).
    ConfusableName,
    /// The key is not an acceptable RSA public key.
    BadKey,
    /// `--max-clients` are connected.
    ServerFull,
    /// `--max-per-address` clients are connected from the same address.
    AddressLimit,
    /// The client speaks another protocol version.
    Version,
    /// The first message was not a hello, or it did not arrive in time.
    Protocol,
    /// The server is shutting down.
    ShuttingDown,
    /// Too many connections are waiting to join: try again in a few seconds.
    /// Sent by the acceptor, before any hello is read.
    Busy,
}

/// A sealed message: text encrypted for one recipient and signed by its
/// sender. Built and opened by [`crate::shared::crypto`]; the server only
/// checks its sizes and relays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Random message id, 32 hex digits; a recipient never accepts one twice.
    pub id: String,
    /// The recipient's name.
    pub to: String,
    /// When the sender sealed it, in milliseconds since the Unix epoch.
    pub sent_at: u64,
    /// The one-time AES-256-GCM key, wrapped with RSA-OAEP (SHA-256) under the recipient's key.
    #[serde(with = "base64_bytes")]
    pub wrapped_key: Vec<u8>,
    /// The 12-byte AES-GCM nonce.
    #[serde(with = "base64_bytes")]
    pub nonce: Vec<u8>,
    /// The UTF-8 text, encrypted with AES-256-GCM (tag included).
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// RSA-PSS (SHA-256) signature by the sender over everything above and its name.
    #[serde(with = "base64_bytes")]
    pub signature: Vec<u8>,
}

impl Envelope {
    /// Bytes of sealed material: wrapped key, nonce and ciphertext.
    pub fn sealed_len(&self) -> usize {
        self.wrapped_key.len() + self.nonce.len() + self.ciphertext.len()
    }

    /// Checks every size a relaying server must bound. It cannot check more:
    /// only the recipient can open and verify the envelope.
    pub fn check_limits(&self) -> Result<(), MessageError> {
        let max_rsa_bytes = MAX_KEY_BITS / 8;
        let invalid = |what: String| Err(MessageError::Invalid(what));
        if self.id.is_empty() || self.id.len() > 64 {
            return invalid(format!("message id must be 1 to 64 bytes, got {}", self.id.len()));
        }
        if let Err(e) = validate_name(&self.to) {
            return invalid(format!("recipient: {e}"));
        }
        if self.wrapped_key.len() > max_rsa_bytes || self.signature.len() > max_rsa_bytes {
            return invalid(format!("wrapped key and signature must be at most {max_rsa_bytes} bytes"));
        }
        if self.nonce.len() != 12 {
            return invalid(format!("nonce must be 12 bytes, got {}", self.nonce.len()));
        }
        if self.ciphertext.len() > MAX_CIPHERTEXT_BYTES {
            return invalid(format!(
                "ciphertext of {} bytes exceeds the limit of {MAX_CIPHERTEXT_BYTES} bytes",
                self.ciphertext.len()
            ));
        }
        Ok(())
    }
}

/// Why a frame did not hold an acceptable message. The connection survives:
/// the frame boundary is intact, so the server answers with an error.
#[derive(Debug, Error)]
pub enum MessageError {
    /// A binary frame arrived where only control messages are allowed.
    #[error("expected a control frame, got a {0:?} frame")]
    UnexpectedKind(FrameKind),
    /// The payload is not JSON, or not a message this side understands.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message parsed but breaks a limit.
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// Decodes a control frame into a message of type `M`.
pub fn decode<M: for<'de> Deserialize<'de>>(frame: &Frame) -> Result<M, MessageError> {
    if frame.kind != FrameKind::Control {
        return Err(MessageError::UnexpectedKind(frame.kind));
    }
    serde_json::from_slice(&frame.payload).map_err(|e| MessageError::Malformed(e.to_string()))
}

/// Encodes a message into a complete control frame, header included.
pub fn encode<M: Serialize>(message: &M) -> Result<Vec<u8>, FrameError> {
    let json = serde_json::to_vec(message).map_err(|e| FrameError::Io(e.into()))?;
    encode_frame(FrameKind::Control, &json)
}

/// Serde helper: `Vec<u8>` as standard base64 text.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        // Owned: a JSON string with escapes cannot be borrowed from the input.
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(json: &str) -> Frame {
        Frame { kind: FrameKind::Control, payload: json.as_bytes().to_vec() }
    }

    #[test]
    fn hello_has_the_documented_shape() {
        let hello = ClientMessage::Hello { version: 1, name: "alice".into(), public_key: "PEM".into() };
        let json = serde_json::to_string(&hello).unwrap();
        assert_eq!(json, r#"{"type":"hello","version":1,"name":"alice","public_key":"PEM"}"#);
        assert_eq!(decode::<ClientMessage>(&frame(&json)).unwrap(), hello);
        assert_eq!(decode::<ClientMessage>(&frame(r#"{"type":"quit"}"#)).unwrap(), ClientMessage::Quit);
    }

    #[test]
    fn rejects_unknown_types_wrong_shapes_and_binary_frames() {
        for bad in [r#"{"type":"launch"}"#, r#"{"type":"hello"}"#, "[1,2]", "not json", r#"{"type":7}"#] {
            assert!(matches!(decode::<ClientMessage>(&frame(bad)), Err(MessageError::Malformed(_))), "{bad}");
        }
        let binary = Frame { kind: FrameKind::Video, payload: b"{}".to_vec() };
        assert!(matches!(decode::<ClientMessage>(&binary), Err(MessageError::UnexpectedKind(FrameKind::Video))));
    }

    #[test]
    fn envelope_bytes_travel_as_base64_and_limits_are_checked() {
        let envelope = Envelope {
            id: "00ff".into(),
            to: "bob".into(),
            sent_at: 5,
            wrapped_key: vec![1, 2, 3],
            nonce: vec![0; 12],
            ciphertext: vec![0xfe; 4],
            signature: vec![9],
        };
        let json = serde_json::to_string(&envelope).unwrap();
        assert!(json.contains(r#""wrapped_key":"AQID""#), "{json}");
        assert_eq!(serde_json::from_str::<Envelope>(&json).unwrap(), envelope);
        assert!(envelope.check_limits().is_ok());
        assert_eq!(envelope.sealed_len(), 3 + 12 + 4);

        let mut bad = envelope.clone();
        bad.nonce = vec![0; 11];
        assert!(bad.check_limits().is_err());
        let mut bad = envelope.clone();
        bad.ciphertext = vec![0; MAX_CIPHERTEXT_BYTES + 1];
        assert!(bad.check_limits().is_err());
        let mut bad = envelope;
        bad.to = "\u{1b}[2J".into();
        assert!(bad.check_limits().is_err());
    }
}
