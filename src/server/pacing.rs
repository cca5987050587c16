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
//! nobody else slows down. The stop flag and the viewer's commands are
//! looked at at least every [`STOP_CHECK`], so a stop, a pause or a seek
//! ends the wait.

use std::collections::VecDeque;
use std::thread;
use std::time::{Duration, Instant};

use super::control::Control;
use super::video_item::VideoItem;
use crate::shared::limits::LOOKAHEAD_FRAMES;
use crate::shared::video::Pace;

/// How long a streaming thread sleeps at most before looking at its controls.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The pictures of one stream between their encoding and their time.
pub(crate) struct Pacer<'a> {
    control: &'a Control<'a>,
    pace: Pace,
    /// When the first picture is due: presentation times count from here.
    started: Instant,
    /// The first picture's presentation time (a stream may start mid-video).
    origin: Option<Duration>,
    /// Encoded pictures with the moment each is due and their frame number, in order.
    ready: VecDeque<(Instant, u32, VideoItem)>,
    /// Pictures handed to the writer so far, and how many of them more than
    /// one frame `interval` after their time.
    pub(crate) sent: u32,
    pub(crate) late: u32,
    interval: Duration,
    /// The frame number of the last picture handed to the writer.
    last_queued: Option<u32>,
    /// The viewer's queue is gone (or the stream was stopped while sending).
    pub(crate) gone: bool,
}

impl<'a> Pacer<'a> {
    /// Starts the clock: the first picture is due now. `fps` is the video's rate.
    pub(crate) fn new(control: &'a Control<'a>, pace: Pace, fps: f64) -> Pacer<'a> {
        let ready = VecDeque::with_capacity(LOOKAHEAD_FRAMES + 1);
        let interval = Duration::try_from_secs_f64(1.0 / fps).unwrap_or(Duration::MAX);
        let (started, origin, sent, late) = (Instant::now(), None, 0, 0);
        Pacer { control, pace, started, origin, ready, sent, late, interval, last_queued: None, gone: false }
    }

    /// Starts the clock again (after a pause or a seek): the next picture is
    /// due now, and the ones after it from there.
    pub(crate) fn restart(&mut self) {
        (self.started, self.origin) = (Instant::now(), None);
    }

    /// Takes back every picture the viewer has not been sent: the ones in
    /// its video queue and the ones waiting here (with any message waiting
    /// between them). The frame to send again from, if any.
    pub(crate) fn take_back(&mut self) -> Option<u32> {
        let (queued, count) = self.control.take_back_queued(self.last_queued);
        self.sent = self.sent.saturating_sub(count);
        let waiting = self.ready.iter().find(|(_, _, item)| item.is_frame()).map(|&(_, sequence, _)| sequence);
        self.ready.clear();
        queued.or(waiting)
    }

    /// Queues a control message after the pictures waiting here: it goes to
    /// the viewer just before the next picture taken.
    pub(crate) fn announce(&mut self, item: VideoItem) {
        let due = self.ready.back().map_or_else(Instant::now, |&(due, _, _)| due);
        self.ready.push_back((due, 0, item));
    }

    /// Takes frame `sequence`, due `pts` after the first one's. Sends
    /// whatever is due, and while more than [`LOOKAHEAD_FRAMES`] are
    /// waiting, waits for the oldest's time and sends it. False if the
    /// stream was halted (stopped, or a command came) or the viewer is gone.
    pub(crate) fn push(&mut self, pts: Duration, sequence: u32, item: VideoItem) -> bool {
        let origin = *self.origin.get_or_insert(pts);
        // A time beyond any clock (a file's nonsense timestamp) is due at once.
        let due = self.started.checked_add(pts.saturating_sub(origin)).unwrap_or_else(Instant::now);
        self.ready.push_back((due, sequence, item));
        while self.send_due() {
            if self.ready.len() <= LOOKAHEAD_FRAMES {
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

    /// Sends the pictures that are due (all of them with `--pace none`);
    /// false if the stream is halted or the viewer gone.
    fn send_due(&mut self) -> bool {
        while !self.control.halted()
            && let Some((due, _, _)) = self.ready.front()
            && (self.pace == Pace::None || *due <= Instant::now())
            && let Some((due, _, item)) = self.ready.pop_front()
        {
            let late =
                self.pace == Pace::Native && due.checked_add(self.interval).is_some_and(|by| Instant::now() > by);
            let frame = match &item {
                VideoItem::Frame { sequence, .. } => Some(*sequence),
                VideoItem::Control(_) => None,
            };
            if !self.control.send_picture(item, !late) {
                self.gone = true;
                return false;
            }
            if frame.is_some() {
                (self.sent, self.last_queued) = (self.sent + 1, frame);
                self.late += u32::from(late);
            }
        }
        !self.control.halted()
    }

    /// Sleeps towards the oldest picture's time, in naps short enough to see a command.
    fn nap(&self) {
        if let Some((due, _, _)) = self.ready.front() {
            thread::sleep(due.saturating_duration_since(Instant::now()).min(STOP_CHECK));
        }
    }
}
