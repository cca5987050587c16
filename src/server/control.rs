//! Steering a stream: pause, resume and seek. The viewer's handler thread
//! passes each command on ([`Playback`]); the streaming thread applies it
//! between two frames ([`Control`]), and answers with a `stream_state`
//! saying where the stream stands.
//!
//! A command takes effect on what is not sent yet: the pictures waiting in
//! the pacer and in the viewer's video queue are dropped, so the first
//! picture after the answer is exactly the frame it names. A paused stream's
//! thread blocks on its commands — no CPU at all — and after
//! [`PAUSED_HOLD`] lets go of its files (another viewer may want the
//! decoder, and the file may be replaced); it opens them again on resume.
//!
//! The same controls carry what the adaptive plan reads: whether a picture
//! found the viewer's queue [`FILLING`], and the bytes its writer got into
//! the socket.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use super::video_item::VideoItem;
use crate::shared::limits::VIDEO_QUEUE_FRAMES;
use crate::shared::message::{ServerMessage, encode};
use crate::shared::video::PlayState;

/// How long a paused stream keeps its files open.
pub(crate) const PAUSED_HOLD: Duration = Duration::from_secs(60);

/// Commands a handler may have waiting for its stream; more are refused.
pub(crate) const MAX_WAITING_COMMANDS: usize = 16;

/// How often a stream blocked on a full video queue looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Pictures waiting in the viewer's queue, at a send, that say its link is
/// not keeping up: half the queue. (Over a link that keeps up, the writer
/// has taken each picture long before the next is due.)
const FILLING: usize = VIDEO_QUEUE_FRAMES / 2;

/// What a viewer asks of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Pause,
    Resume,
    /// Go on from this frame.
    Seek(u32),
    /// Sent with the stop flag, to wake a paused stream.
    Stop,
}

/// Shared between a streaming thread and its handler (which also sends it
/// [`Command`]s).
#[derive(Default)]
pub(crate) struct Flags {
    /// Set by the handler: stop at the next frame.
    pub(crate) stop: AtomicBool,
    /// Set by the streaming thread just before it queues the stream's end, so
    /// a client that has read the end may start the next playback at once.
    pub(crate) ended: AtomicBool,
}

/// A playback in progress, as its viewer's handler thread holds it: the
/// streaming thread, the flag that stops it and the channel that steers it.
pub(crate) struct Playback {
    pub(crate) id: u32,
    pub(crate) flags: Arc<Flags>,
    pub(crate) commands: Sender<Command>,
    pub(crate) thread: JoinHandle<()>,
}

impl Playback {
    /// Flags the stream to stop, and wakes it if it is paused.
    pub(crate) fn stop(&self) {
        self.flags.stop.store(true, Ordering::Relaxed);
        let _ = self.commands.try_send(Command::Stop);
    }
}

/// The streaming thread's side of its controls.
pub(crate) struct Control<'a> {
    pub(crate) stream: u32,
    pub(crate) stop: &'a AtomicBool,
    pub(crate) commands: Receiver<Command>,
    /// The viewer's video queue: this thread sends into it, and takes back
    /// what the writer has not taken yet when a command makes it stale.
    pub(crate) queue: Sender<VideoItem>,
    pub(crate) unsent: Receiver<VideoItem>,
    /// Bytes of video the viewer's writer has got into the socket.
    pub(crate) written: Arc<AtomicU64>,
    /// Whether a send found the queue [`FILLING`] since [`Control::take_filled`].
    pub(crate) filled: Cell<bool>,
}

/// Where the stream goes after its commands.
pub(crate) enum Steer {
    /// Go on playing from this frame.
    Play(u32),
    /// Stopped, or the viewer is gone.
    Stop,
}

impl Control<'_> {
    /// Whether the stream should leave what it is doing: a stop, or a command.
    pub(crate) fn halted(&self) -> bool {
        self.stopped() || !self.commands.is_empty()
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Applies every waiting command, answering each, and while paused waits
    /// for more. `next` is the first frame not sent to the viewer (the
    /// caller took back what was queued), `last` the video's last frame.
    /// `release` is called once when a pause has lasted [`PAUSED_HOLD`].
    pub(crate) fn steer(&self, mut next: u32, last: u32, release: &mut dyn FnMut()) -> Steer {
        let mut paused = false;
        let mut released = false;
        loop {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(_) if !paused => return Steer::Play(next),
                Err(_) if released => match self.commands.recv() {
                    Ok(command) => command,
                    Err(_) => return Steer::Stop,
                },
                Err(_) => match self.commands.recv_timeout(PAUSED_HOLD) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => {
                        release();
                        released = true;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return Steer::Stop,
                },
            };
            match command {
                Command::Stop => return Steer::Stop,
                Command::Pause => paused = true,
                Command::Resume => paused = false,
                Command::Seek(frame) => next = frame.min(last),
            }
            if self.stopped() {
                return Steer::Stop;
            }
            let state = if paused { PlayState::Paused } else { PlayState::Playing };
            let answer = ServerMessage::StreamState {
                stream: self.stream,
                state,
                next_frame: next,
                resolution: None,
                measured_kbps: None,
            };
            if !encode(&answer).is_ok_and(|bytes| self.send(VideoItem::Control(bytes.into()))) {
                return Steer::Stop;
            }
        }
    }

    /// Bytes of video the writer has got into the socket so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Whether a send found the viewer's queue [`FILLING`] since the last call.
    pub(crate) fn take_filled(&self) -> bool {
        self.filled.replace(false)
    }

    /// Takes back every picture still in the viewer's queue, `last_queued`
    /// being the last one put in: the frame to send again from (if any),
    /// and how many were taken. Control messages there (the stream's
    /// start, an earlier answer) go back in, in order.
    ///
    /// The writer takes from the same queue meanwhile, and what it takes it
    /// sends. Only the unbroken run of pictures taken back up to the last
    /// one queued may be sent again: a picture before a gap the writer made
    /// would reach the viewer out of order, and one after it, twice.
    pub(crate) fn take_back_queued(&self, last_queued: Option<u32>) -> (Option<u32>, u32) {
        let (mut run, mut count) = (None::<(u32, u32)>, 0);
        let mut kept = Vec::new();
        while let Ok(item) = self.unsent.try_recv() {
            match item {
                VideoItem::Frame { sequence, .. } => {
                    count += 1;
                    run = match run {
                        Some((first, last)) if last.checked_add(1) == Some(sequence) => Some((first, sequence)),
                        _ => Some((sequence, sequence)),
                    };
                }
                control @ VideoItem::Control(_) => kept.push(control),
            }
        }
        let first = run.filter(|&(_, last)| Some(last) == last_queued).map(|(first, _)| first);
        for item in kept {
            self.send(item);
        }
        (first, count)
    }

    /// Queues a picture like [`send`](Self::send), noting whether the queue
    /// was [`FILLING`]: a sign of a slow link only when the picture is sent
    /// `on_time` (when the stream itself fell behind, it sends a burst, and
    /// the queue fills however fast the link is).
    pub(crate) fn send_picture(&self, item: VideoItem, on_time: bool) -> bool {
        if on_time && self.queue.len() >= FILLING {
            self.filled.set(true);
        }
        self.send(item)
    }

    /// Queues an item for the writer, waiting while the queue is full, but
    /// giving up when the stream is stopped or the viewer is gone.
    pub(crate) fn send(&self, mut item: VideoItem) -> bool {
        loop {
            match self.queue.send_timeout(item, STOP_CHECK) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) if !self.stopped() => item = back,
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::Slice;
    use crate::server::video_item::FrameHead;

    fn picture(sequence: u32) -> VideoItem {
        VideoItem::Frame { sequence, head: FrameHead::new(), jpeg: Slice::from(Arc::<[u8]>::from(&[][..])) }
    }

    /// What is taken back when the viewer's queue holds `queued` and the
    /// last picture put in was `last`.
    fn take_back(queued: &[u32], last: u32) -> (Option<u32>, u32) {
        let stop = AtomicBool::new(false);
        let (queue, unsent) = crossbeam_channel::bounded(8);
        let (_commands, commands) = crossbeam_channel::bounded(1);
        let written = Arc::new(AtomicU64::new(0));
        let control = Control { stream: 1, stop: &stop, commands, queue, unsent, written, filled: Cell::new(false) };
        for &sequence in queued {
            control.send(picture(sequence));
        }
        control.take_back_queued(Some(last))
    }

    #[test]
    fn only_the_unbroken_run_up_to_the_last_picture_queued_is_sent_again() {
        assert_eq!(take_back(&[74, 75, 76], 76), (Some(74), 3));
        // The writer took 75 while the stream took 74: sending again from 74
        // would send 75 twice; 74 is lost instead (it is not counted as sent).
        assert_eq!(take_back(&[74, 76], 76), (Some(76), 2));
        // The writer took the last one: nothing is sent again.
        assert_eq!(take_back(&[74, 75], 76), (None, 2));
        assert_eq!(take_back(&[], 76), (None, 0));
    }
}
