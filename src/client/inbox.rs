//! The hand-over of video from the reader thread to the player on the main
//! thread. The reader puts, the player takes.
//!
//! The lesson is the one every video player teaches: the network must not
//! wait for the screen. If the reader thread waited while the player drew a
//! frame, the socket would fill, TCP would slow the server's stream for
//! this viewer, and the picture would fall behind the clock. So the reader
//! never waits for a picture: frames beyond the inbox's bounds (a count and
//! a byte budget, so a server cannot make the client hold unbounded memory)
//! are dropped here and counted, and the player, for its part, skips a
//! frame when a newer one is already waiting (see `player.rs`). Control
//! messages (a stream's start and end, the library) are few and always
//! delivered, in order with the frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::shared::message::VideoInfo;
use crate::shared::video::{EndReason, FrameHeader, PlayState};

/// Items that may wait in the inbox.
const INBOX_ITEMS: usize = 1024;
/// Bytes of pictures that may wait in the inbox.
const INBOX_BYTES: usize = 64 << 20;

/// Video messages, handed from the reader thread to the main thread.
pub(crate) enum Media {
    /// The library listing.
    List(Vec<VideoInfo>),
    /// A stream begins; `resolutions` are those it may use.
    Start { stream: u32, video: String, fps: f64, frames: u32, resolutions: Vec<String> },
    /// One picture.
    Frame(Picture),
    /// The server's answer to a pause, resume or seek.
    State { stream: u32, state: PlayState, next_frame: u32 },
    /// A stream ended.
    End { stream: u32, reason: EndReason, total: Option<u32>, message: Option<String> },
}

/// One received picture.
pub(crate) struct Picture {
    pub(crate) header: FrameHeader,
    pub(crate) jpeg: Vec<u8>,
    pub(crate) arrived: Instant,
}

/// What the two ends share: the bytes waiting, and the frames dropped
/// because the inbox was full.
#[derive(Default)]
struct Backlog {
    bytes: AtomicUsize,
    lost: AtomicU32,
}

/// A new inbox: the reader's end and the player's.
pub(crate) fn inbox() -> (Mailbox, Inbox) {
    let (sender, receiver) = crossbeam_channel::bounded(INBOX_ITEMS);
    let backlog = Arc::new(Backlog::default());
    (Mailbox { sender, backlog: Arc::clone(&backlog) }, Inbox { receiver, backlog })
}

/// The reader thread's end.
pub(crate) struct Mailbox {
    sender: Sender<Media>,
    backlog: Arc<Backlog>,
}

impl Mailbox {
    /// Hands over a control message; waits only if a thousand items are waiting.
    pub(crate) fn send(&self, media: Media) {
        let _ = self.sender.send(media);
    }

    /// Hands over a picture, or drops it (counted) if the inbox is full:
    /// never waits.
    pub(crate) fn send_frame(&self, picture: Picture) {
        let size = picture.jpeg.len();
        let before = self.backlog.bytes.fetch_add(size, Ordering::SeqCst);
        let full = before + size > INBOX_BYTES;
        if full || matches!(self.sender.try_send(Media::Frame(picture)), Err(TrySendError::Full(_))) {
            self.backlog.bytes.fetch_sub(size, Ordering::SeqCst);
            self.backlog.lost.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The player's end.
pub(crate) struct Inbox {
    receiver: Receiver<Media>,
    backlog: Arc<Backlog>,
}

impl Inbox {
    /// The next item, waiting up to `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<Media, RecvTimeoutError> {
        self.receiver.recv_timeout(timeout).map(|media| self.taken(media))
    }

    /// The next item if one is waiting.
    pub(crate) fn try_recv(&self) -> Option<Media> {
        self.receiver.try_recv().ok().map(|media| self.taken(media))
    }

    /// Frames dropped because the inbox was full, since the last call.
    pub(crate) fn take_lost(&self) -> u32 {
        self.backlog.lost.swap(0, Ordering::SeqCst)
    }

    fn taken(&self, media: Media) -> Media {
        if let Media::Frame(picture) = &media {
            self.backlog.bytes.fetch_sub(picture.jpeg.len(), Ordering::SeqCst);
        }
        media
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(sequence: u32, bytes: usize) -> Picture {
        let header = FrameHeader { stream: 1, sequence, pts_micros: 0, resolution: "240p".into() };
        Picture { header, jpeg: vec![0; bytes], arrived: Instant::now() }
    }

    #[test]
    fn a_full_inbox_drops_pictures_and_counts_them_but_never_control_messages() {
        let (mailbox, inbox) = inbox();
        mailbox.send_frame(picture(0, INBOX_BYTES - 10));
        mailbox.send_frame(picture(1, 100)); // over the byte budget: dropped
        mailbox.send(Media::End { stream: 1, reason: EndReason::Finished, total: None, message: None });
        assert!(matches!(inbox.try_recv(), Some(Media::Frame(p)) if p.header.sequence == 0));
        assert!(matches!(inbox.try_recv(), Some(Media::End { .. })));
        assert_eq!(inbox.take_lost(), 1);
        assert_eq!(inbox.take_lost(), 0);
        mailbox.send_frame(picture(2, 100)); // room again once taken
        assert!(matches!(inbox.try_recv(), Some(Media::Frame(p)) if p.header.sequence == 2));
        for i in 0..INBOX_ITEMS as u32 + 5 {
            mailbox.send_frame(picture(i, 1));
        }
        assert_eq!(inbox.take_lost(), 5, "beyond the item bound too");
    }
}
