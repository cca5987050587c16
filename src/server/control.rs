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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use super::video_item::VideoItem;
use crate::shared::message::{ServerMessage, encode};
use crate::shared::video::PlayState;

/// How long a paused stream keeps its files open.
pub(crate) const PAUSED_HOLD: Duration = Duration::from_secs(60);

/// Commands a handler may have waiting for its stream; more are refused.
pub(crate) const MAX_WAITING_COMMANDS: usize = 16;

/// How often a stream blocked on a full video queue looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

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
    /// for more. `next` is the first frame not yet queued for the viewer
    /// (`pacer_unsent`: the first the pacer still held), `last` the video's
    /// last frame. `release` is called once when a pause has lasted
    /// [`PAUSED_HOLD`].
    pub(crate) fn steer(&self, next: u32, pacer_unsent: Option<u32>, last: u32, release: &mut dyn FnMut()) -> Steer {
        let mut next = match self.take_back_unsent() {
            Some(first) => first,
            None => pacer_unsent.unwrap_or(next),
        };
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
            let answer = ServerMessage::StreamState { stream: self.stream, state, next_frame: next };
            if !encode(&answer).is_ok_and(|bytes| self.send(VideoItem::Control(bytes.into()))) {
                return Steer::Stop;
            }
        }
    }

    /// Takes back every picture still in the viewer's queue; the first one's
    /// frame number, if any. Control messages there (the stream's start, an
    /// earlier answer) go back in, in order.
    fn take_back_unsent(&self) -> Option<u32> {
        let mut first = None;
        let mut kept = Vec::new();
        while let Ok(item) = self.unsent.try_recv() {
            match item {
                VideoItem::Frame { sequence, .. } => {
                    first.get_or_insert(sequence);
                }
                control @ VideoItem::Control(_) => kept.push(control),
            }
        }
        for item in kept {
            self.send(item);
        }
        first
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
