//! `--trace`: one line on stderr per frame sent or received, so a class can
//! watch the protocol at work — direction, peer, kind, size, and a short
//! summary. Only what crosses the wire is shown, and the wire never carries
//! plaintext: a sealed message shows its sender, addressee and the first
//! bytes of its ciphertext.
//!
//! Called by whichever thread reads or writes the frame.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::frame::FrameKind;
use super::video::FrameHeader;
use super::visible::visible;

/// Which way a frame went.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Read from the peer.
    Received,
    /// Written to the peer.
    Sent,
}

/// Prints the trace line of one frame.
pub fn frame(direction: Direction, peer: &str, kind: FrameKind, payload: &[u8]) {
    print_line(direction, peer, kind, payload.len() + 5, &summary(kind, payload));
}

/// Prints the trace line of an encoded frame (header included), whose
/// payload may continue in `extra` (a video frame's JPEG, not copied).
pub fn encoded(direction: Direction, peer: &str, frame_bytes: &[u8], extra: &[u8]) {
    let Some(kind) = frame_bytes.get(4).and_then(|&k| FrameKind::try_from(k).ok()) else { return };
    let payload = &frame_bytes[5..];
    let text = match kind {
        FrameKind::Video if !extra.is_empty() => video_summary(payload, extra.len()),
        _ => summary(kind, payload),
    };
    print_line(direction, peer, kind, frame_bytes.len() + extra.len(), &text);
}

fn print_line(direction: Direction, peer: &str, kind: FrameKind, size: usize, summary: &str) {
    let arrow = match direction {
        Direction::Received => "recv",
        Direction::Sent => "send",
    };
    eprintln!("trace: {arrow} {peer} {} {size} B {summary}", kind_name(kind));
}

/// A video frame's summary from its header (at the front of `payload`) and
/// the JPEG's size beyond what `payload` holds.
fn video_summary(payload: &[u8], more_jpeg: usize) -> String {
    match FrameHeader::decode(payload) {
        Ok((header, jpeg)) => format!(
            "stream={} seq={} {} jpeg={} B",
            header.stream,
            header.sequence,
            visible(&header.resolution),
            jpeg.len() + more_jpeg
        ),
        Err(_) => "malformed video header".into(),
    }
}

fn kind_name(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Control => "control",
        FrameKind::Video => "video",
    }
}

/// The short description of a frame's payload.
pub fn summary(kind: FrameKind, payload: &[u8]) -> String {
    match kind {
        FrameKind::Video => video_summary(payload, 0),
        FrameKind::Control => match serde_json::from_slice::<Value>(payload) {
            Ok(value) => control_summary(&value),
            Err(_) => "not JSON".into(),
        },
    }
}

fn control_summary(value: &Value) -> String {
    let text = |v: &Value, key: &str| {
        v.get(key).map(|f| match f {
            Value::String(s) => visible(&shorten(s, 40)).into_owned(),
            other => shorten(&other.to_string(), 40),
        })
    };
    let kind = text(value, "type").unwrap_or_else(|| "?".into());
    let mut out = kind.clone();
    let mut field = |label: &str, v: Option<String>| {
        if let Some(v) = v {
            let _ = write!(out, " {label}={v}");
        }
    };
    match kind.as_str() {
        "hello" => {
            field("name", text(value, "name"));
            field("version", text(value, "version"));
        }
        "welcome" => {
            field("name", text(value, "name"));
            field("peers", value.get("peers").and_then(Value::as_array).map(|p| p.len().to_string()));
        }
        "refused" => field("code", text(value, "code")),
        "peer_joined" => field("name", text(value, "name")),
        "peer_left" => {
            field("name", text(value, "name"));
            field("reason", text(value, "reason"));
        }
        "send" | "sealed" => {
            field("from", text(value, "from"));
            if let Some(envelope) = value.get("envelope") {
                field("to", text(envelope, "to"));
                field("id", text(envelope, "id").map(|id| shorten(&id, 8)));
                let ciphertext =
                    envelope.get("ciphertext").and_then(Value::as_str).and_then(|b| STANDARD.decode(b).ok());
                if let Some(bytes) = ciphertext {
                    let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
                    field("ciphertext", Some(format!("{head}… ({} B)", bytes.len())));
                }
            }
        }
        "error" => field("message", text(value, "message")),
        "server_closing" => field("reason", text(value, "reason")),
        "video_list" => field("videos", value.get("videos").and_then(Value::as_array).map(|v| v.len().to_string())),
        "play" => {
            field("video", text(value, "video"));
            field("pace", text(value, "pace"));
            field("start", text(value, "start"));
            field("plan", text(value, "plan"));
        }
        "stop" | "pause" | "resume" => field("stream", text(value, "stream")),
        "seek" => {
            field("stream", text(value, "stream"));
            field("frame", text(value, "frame"));
        }
        "stream_state" => {
            field("stream", text(value, "stream"));
            field("state", text(value, "state"));
            field("next_frame", text(value, "next_frame"));
            field("resolution", text(value, "resolution"));
            field("measured_kbps", text(value, "measured_kbps"));
        }
        "stream_start" => {
            field("stream", text(value, "stream"));
            field("video", text(value, "video"));
            field("frames", text(value, "frames"));
            field("fps", text(value, "fps"));
        }
        "stream_end" => {
            field("stream", text(value, "stream"));
            field("reason", text(value, "reason"));
            field("frames", text(value, "frames"));
            field("total", text(value, "total"));
        }
        _ => {}
    }
    out
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_without_contents() {
        let sealed = br#"{"type":"sealed","from":"alice","envelope":{"id":"5f1c0a9e3b7d4e21","to":"bob","sent_at":1,"wrapped_key":"","nonce":"","ciphertext":"AQIDBAUGBwgJ","signature":""}}"#;
        assert_eq!(
            summary(FrameKind::Control, sealed),
            "sealed from=alice to=bob id=5f1c0a9e… ciphertext=0102030405060708… (9 B)"
        );
        assert_eq!(
            summary(FrameKind::Control, br#"{"type":"hello","name":"\u001b[2J","version":1}"#),
            "hello name=\\x1b[2J version=1"
        );
        let mut video = Vec::new();
        FrameHeader { stream: 2, sequence: 17, pts_micros: 0, resolution: "720p".into() }.encode_into(&mut video);
        video.extend_from_slice(&[0; 100]);
        assert_eq!(summary(FrameKind::Video, &video), "stream=2 seq=17 720p jpeg=100 B");
        assert_eq!(summary(FrameKind::Control, b"{oops"), "not JSON");
    }
}
