//! Pacing a stream: each picture goes to the viewer's writer at its
//! presentation time, and up to [`LOOKAHEAD_FRAMES`] wait here, encoded
//! ahead of their time. Runs on the streaming thread.
//!
//! Why work ahead: a streaming thread that encoded each frame just in time
//! would turn every moment the CPU spends elsewhere (another stream's 1440p
//! frame, a burst of joins) into a late frame. With a few frames encoded
//! early, the same moment only uses up slack. The queue is a quarter of a
//! second at 30 fps: enough for jitter, not enough to hide a stream the CPU
//! cannot keep up with.
//!
//! A full video queue (a viewer reading slowly) makes only this thread wait:
//! nobody else slows down. The stop flag is checked at least every
//! [`STOP_CHECK`], so a stop or a departed viewer ends the wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};

use crate::shared::limits::LOOKAHEAD_FRAMES;
use crate::shared::video::Pace;

/// How long a streaming thread sleeps at most before looking at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The pictures of one stream between their encoding and their time (`T`:
/// what the writer's queue takes).
pub(crate) struct Pacer<'a, T> {
    queue: &'a Sender<T>,
    stop: &'a AtomicBool,
    pace: Pace,
    /// When the first picture is due: presentation times count from here.
    started: Instant,
    /// The first picture's presentation time (a stream may start mid-video).
    origin: Option<Duration>,
    /// Encoded pictures with the moment each is due, in order.
    ready: VecDeque<(Instant, T)>,
    /// Pictures handed to the writer so far.
    pub(crate) sent: u32,
}

impl<'a, T> Pacer<'a, T> {
    /// Starts the clock: the first picture is due now.
    pub(crate) fn new(queue: &'a Sender<T>, stop: &'a AtomicBool, pace: Pace) -> Pacer<'a, T> {
        let ready = VecDeque::with_capacity(LOOKAHEAD_FRAMES);
        Pacer { queue, stop, pace, started: Instant::now(), origin: None, ready, sent: 0 }
    }

    /// Takes a picture due `pts` after the first one's. Sends whatever is due
    /// first, and if [`LOOKAHEAD_FRAMES`] are waiting, waits for the oldest's
    /// time and sends it. False if the stream was stopped or the viewer is gone.
    pub(crate) fn push(&mut self, pts: Duration, item: T) -> bool {
        while self.send_due() {
            if self.ready.len() < LOOKAHEAD_FRAMES {
                let origin = *self.origin.get_or_insert(pts);
                // A time beyond any clock (a file's nonsense timestamp) is due at once.
                let due = self.started.checked_add(pts.saturating_sub(origin)).unwrap_or_else(Instant::now);
                self.ready.push_back((due, item));
                return true;
            }
            self.nap();
        }
        false
    }

    /// Sends every picture still waiting, each at its time.
    pub(crate) fn finish(&mut self) -> bool {
        while self.send_due() {
            if self.ready.is_empty() {
                return true;
            }
            self.nap();
        }
        false
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sends the pictures that are due (all of them with `--pace none`).
    fn send_due(&mut self) -> bool {
        while let Some((due, _)) = self.ready.front()
            && (self.pace == Pace::None || *due <= Instant::now())
            && let Some((_, item)) = self.ready.pop_front()
        {
            if !self.deliver(item) {
                return false;
            }
            self.sent += 1;
        }
        !self.stopped()
    }

    /// Sleeps towards the oldest picture's time, in naps short enough to see a stop.
    fn nap(&self) {
        if let Some((due, _)) = self.ready.front() {
            thread::sleep(due.saturating_duration_since(Instant::now()).min(STOP_CHECK));
        }
    }

    /// Queues a picture for the writer, waiting while the viewer's queue is
    /// full, but giving up as soon as the stream is stopped or the viewer is gone.
    fn deliver(&self, mut item: T) -> bool {
        loop {
            match self.queue.send_timeout(item, STOP_CHECK) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) if !self.stopped() => item = back,
                Err(_) => return false,
            }
        }
    }
}
