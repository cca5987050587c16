//! The reader thread: everything the server sends, printed as it arrives.
//!
//! This thread blocks in `read` on the socket for the whole session, so
//! joins, leaves and messages are shown at once, whatever the main thread is
//! doing (waiting at a prompt, sealing a message, playing a video). It
//! updates the local registry, hands video messages to the main thread while
//! the session's mode wants them, and never writes to the socket: in
//! particular it never answers a message it could not open, so a forger
//! learns nothing from trying. It ends with the connection: quietly after
//! our Quit, or by ending the process with status 1 when the server is gone.

use std::fmt::Write;
use std::io;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::inbox::{self, Inbox, Mailbox, Media, Picture};
use super::peers::Arrival;
use super::session::Session;
use super::terminal;
use super::throttle::Throttled;
use crate::shared::connection::FrameReader;
use crate::shared::crypto::{CryptoError, Identity, now_millis};
use crate::shared::frame::{FrameError, FrameKind};
use crate::shared::limits::MAX_MAX_CLIENTS;
use crate::shared::message::{Envelope, ServerMessage, decode};
use crate::shared::video::FrameHeader;
use crate::shared::visible::{visible, visible_capped};

/// The reader thread, as the main thread sees it once started.
pub(crate) struct Reader {
    /// Video messages, handed over while the main thread wants them.
    pub(crate) media: Inbox,
    /// Nothing is ever sent on this channel: its sender is dropped when the
    /// reader thread ends, however it ends, and that is what [`Reader::wait`]
    /// waits for.
    finished: Receiver<()>,
}

impl Reader {
    /// Waits until the reader thread has ended, for at most `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) {
        let _ = self.finished.recv_timeout(timeout);
    }
}

/// Starts the reader thread on the socket's reading half.
pub(crate) fn start(session: Arc<Session>, reader: FrameReader<Throttled>) -> io::Result<Reader> {
    let (media_sender, media) = inbox::inbox();
    let (finished_sender, finished) = crossbeam_channel::bounded(0);
    thread::Builder::new().name("reader".into()).spawn(move || {
        let _finished: Sender<()> = finished_sender;
        run(session, reader, media_sender);
    })?;
    Ok(Reader { media, finished })
}

/// Reads until the connection ends. If it ends without our quit, the
/// server is gone: say so and exit with status 1.
fn run(session: Arc<Session>, mut reader: FrameReader<Throttled>, media: Mailbox) {
    let ended = loop {
        let frame = match reader.next_frame() {
            Ok(frame) => frame,
            Err(FrameError::Closed) => break "the server closed the connection".to_string(),
            Err(e) => break format!("connection to the server lost: {e}"),
        };
        if frame.kind == FrameKind::Video {
            match FrameHeader::decode(&frame.payload) {
                Ok((header, jpeg)) => {
                    let arrived = Instant::now();
                    if session.mode.media_wanted() {
                        media.send_frame(Picture { header, jpeg: jpeg.to_vec(), arrived });
                    }
                }
                Err(e) => session.printer.event(&format!("warning: ignored a video frame: {e}")),
            }
            continue;
        }
        match decode::<ServerMessage>(frame) {
            Ok(ServerMessage::Goodbye) => return,
            Ok(ServerMessage::ServerClosing { reason }) => {
                break format!("the server closed: {}", visible_capped(&reason));
            }
            Ok(ServerMessage::VideoList { videos }) => forward(&session, &media, Media::List(videos)),
            Ok(ServerMessage::StreamStart { stream, video, fps, frames, plan, renditions }) => {
                let resolutions = match renditions.is_empty() {
                    true => plan.into_iter().map(|part| part.resolution).collect(),
                    false => renditions,
                };
                forward(&session, &media, Media::Start { stream, video, fps, frames, resolutions })
            }
            // A switch of the adaptive plan changes nothing the player keeps:
            // each frame's header names its resolution (and --trace shows it).
            Ok(ServerMessage::StreamState { resolution: Some(_), .. }) => {}
            Ok(ServerMessage::StreamState { stream, state, next_frame, .. }) => {
                forward(&session, &media, Media::State { stream, state, next_frame })
            }
            Ok(ServerMessage::StreamEnd { stream, reason, total, message, .. }) => {
                forward(&session, &media, Media::End { stream, reason, total, message })
            }
            Ok(message) => handle(&session, message),
            Err(e) => session
                .printer
                .event(&format!("warning: ignored a message from the server: {}", visible(&e.to_string()))),
        }
    };
    if session.mode.quitting() {
        return;
    }
    session.printer.error(&ended);
    terminal::exit(1);
}

/// Hands a video message to the main thread, if it is waiting for one: a
/// server that sends video nobody asked for is ignored instead of blocking
/// the chat.
fn forward(session: &Session, media: &Mailbox, item: Media) {
    if session.mode.media_wanted() {
        media.send(item);
    }
}

fn handle(session: &Session, message: ServerMessage) {
    let printer = &session.printer;
    match message {
        ServerMessage::PeerJoined { name, public_key } => {
            let (arrival, saved) = {
                let mut peers = session.peers();
                let arrival = peers.insert(&name, public_key);
                (arrival, peers.save_known())
            };
            let joined = format!("{} joined", visible(&name));
            let lines = match (&arrival, describe_arrival(&name, &arrival)) {
                (Arrival::InvalidName(_), Some(warning)) => warning,
                (_, Some(notice)) => format!("{joined}\n{notice}"),
                (_, None) => joined,
            };
            printer.event(&lines);
            if let Err(e) = saved {
                printer.error(&e);
            }
        }
        ServerMessage::PeerLeft { name, reason } => {
            // A peer that was never shown (refused as a look-alike, say) leaves quietly.
            if session.peers().remove(&name) {
                printer.event(&format!("{} left ({reason})", visible(&name)));
            }
        }
        ServerMessage::Sealed { from, envelope } if envelope.to == session.name => {
            printer.event(&open(session, &from, &envelope));
        }
        ServerMessage::Sealed { from, envelope } => printer.event(&format!(
            "sealed message from {} to {} ({} bytes): not for me, cannot decrypt",
            visible(&from),
            visible(&envelope.to),
            envelope.sealed_len()
        )),
        ServerMessage::Error { message } => {
            printer.event(&format!("warning: server says: {}", visible_capped(&message)))
        }
        ServerMessage::Welcome { .. } | ServerMessage::Refused { .. } => {
            printer.event("warning: unexpected join reply from the server, ignored")
        }
        ServerMessage::Goodbye
        | ServerMessage::ServerClosing { .. }
        | ServerMessage::VideoList { .. }
        | ServerMessage::StreamStart { .. }
        | ServerMessage::StreamState { .. }
        | ServerMessage::StreamEnd { .. } => {}
    }
}

/// The line that tells the user what a peer's key means for trust, if any.
pub(crate) fn describe_arrival(name: &str, arrival: &Arrival) -> Option<String> {
    let name = visible_capped(name);
    match arrival {
        Arrival::New(fingerprint) => Some(format!("new key for {name}: {fingerprint}")),
        Arrival::Known => None,
        Arrival::Changed { was, now, verified: false } => {
            Some(format!("warning: KEY CHANGED for {name}: was {was}, now {now}"))
        }
        Arrival::Changed { was, now, verified: true } => Some(format!(
            "warning: KEY CHANGED for {name}, whom you verified: was {was}, now {now}\n  Nothing is sent to {name} and nothing signed with the new key is shown until you compare it with {name} and verify it (option 4)."
        )),
        Arrival::Unusable => Some(format!("warning: {name} sent an unusable key; {name} is left out")),
        Arrival::InvalidName(why) => {
            Some(format!("warning: the server announced an invalid name \"{name}\" ({why}); ignored"))
        }
        Arrival::TooMany => {
            Some(format!("warning: the server announced more than {MAX_MAX_CLIENTS} peers; {name} ignored"))
        }
    }
}

/// Opens a message addressed to us; the line to print either way.
fn open(session: &Session, from: &str, envelope: &Envelope) -> String {
    let key = match session.peers().key(from) {
        Some(Ok(key)) => key,
        Some(Err(e)) => {
            return format!("warning: message from {} not shown: their key is unusable: {e}", visible(from));
        }
        None => {
            return format!("warning: message from unknown sender {} not shown", visible(from));
        }
    };
    // RSA work happens outside the peers lock (the guard above is a temporary).
    // Signature, then freshness, then decryption: a replayed copy costs a
    // signature check, never a private-key operation.
    let rejected = |why: &dyn std::fmt::Display| format!("warning: message from {} rejected: {why}", visible(from));
    if let Err(e) = Identity::verify(from, &key, envelope) {
        return rejected(&e);
    }
    if let Err(why) = session.freshness().admit(from, &envelope.id, envelope.sent_at, now_millis()) {
        return rejected(&why);
    }
    let text = match session.identity.decrypt(from, envelope) {
        Ok(text) => text,
        Err(e @ (CryptoError::Undecryptable | CryptoError::NotUtf8)) => return rejected(&e),
        Err(e) => return format!("warning: message from {} not shown: {e}", visible(from)),
    };
    match session.peers().unconfirmed_change(from) {
        // Signed by a key we have not accepted: the text is not shown (a
        // swapped key is exactly how a lying server would speak for
        // someone), only how to accept the key if it is genuine.
        Some((was, now)) => {
            let name = visible(from);
            let how = if was.verified {
                format!(
                    "You verified {name}'s old key: compare the new one with {name} aloud, then mark it verified (option 4)."
                )
            } else {
                format!(
                    "If {name} really has a new key (compare fingerprints aloud), mark it verified in option 4, or send {name} a message and answer y to accept it."
                )
            };
            format!(
                "warning: a message from {name} signed with a CHANGED key (was {}, now {now}) is not shown.\n  {how}",
                was.fingerprint
            )
        }
        None => format_message(from, &text),
    }
}

/// `[bob] first line`, further lines indented by two spaces; every line made visible.
pub(crate) fn format_message(from: &str, text: &str) -> String {
    let mut out = format!("[{}] ", visible(from));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\n  ");
        }
        let _ = write!(out, "{}", visible(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_continuation_lines_and_shows_escapes() {
        assert_eq!(format_message("bob", "hi"), "[bob] hi");
        assert_eq!(format_message("bob", "one\ntwo\r\n\u{1b}[2J"), "[bob] one\n  two\\r\n  \\x1b[2J");
    }
}
