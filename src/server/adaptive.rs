//! The adaptive plan: each second of the video goes out at the resolution
//! the viewer's link carries, as DASH and HLS players choose it. Runs on
//! the streaming thread, which asks it before every frame.
//!
//! The rule is buffer-based, with back-off. Its signal is the viewer's
//! video queue: the writer thread empties it into the socket, so a queue
//! found half full means the link did not carry the last pictures in their
//! time. (The socket's own buffer is kept small for it: [`cap_send_buffer`].)
//!
//! - The stream starts at the lowest rendition.
//! - The queue filling: **down at once**, to the highest lower rendition whose
//!   rate (as seen so far in this stream) fits in what the writer got into
//!   the socket lately; at least one step. The pictures still queued are
//!   taken back and sent again at the new resolution, so the viewer is not
//!   left behind by what was queued before the decision. For one segment
//!   after, the queue filling again is the old resolution's bytes still
//!   draining from the socket, and is not a reason to go further down.
//! - [`CALM_SEGMENTS`] whole one-second segments without it filling:
//!   **up one step**, at a segment's boundary.
//! - A rendition the stream had to leave is tried again only after a
//!   back-off: [`FIRST_BACKOFF`], doubled each time it is left again. A
//!   link too slow for it sees one short try every so often, not a stream
//!   that changes resolution every few seconds.
//!
//! Why the queue and not the measured rate alone: a paced stream only ever
//! sends its own rate, so the rate says how much the link carried, never
//! how much more it could. The rate tells how far down to go; the queue
//! tells when.

use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Whole segments without the queue filling before a step up.
pub(crate) const CALM_SEGMENTS: u32 = 2;

/// How long a rendition left for a lower one is not tried again, the first time.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(8);

/// The longest back-off (it doubles each time the rendition is left).
const MAX_BACKOFF: Duration = Duration::from_secs(128);

/// The send buffer asked for a viewer of an adaptive stream (Linux doubles
/// it): less than one 1440p picture, so that the writer feels a slow link
/// within a frame or two.
pub(crate) const SEND_BUFFER_BYTES: usize = 32 * 1024;

/// Of the measured rate, the part a lower rendition's rate must fit in.
const FIT: f64 = 0.9;

/// A measurement over less than this is not used for a decision.
const SHORTEST_MEASUREMENT: Duration = Duration::from_millis(300);

/// A decision to change resolution, from the frame the streaming thread takes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Switch {
    /// The rendition to use, as an index from the lowest.
    pub(crate) to: usize,
    /// Down (the pictures already queued should be sent again) or up.
    pub(crate) down: bool,
    /// What the writer got into the socket per second lately, in kbit/s.
    pub(crate) measured_kbps: u32,
}

/// One rendition, as the rule knows it.
#[derive(Debug, Clone, Default)]
struct Rung {
    /// Pictures of it queued in this stream, and their bytes: its rate.
    frames: u64,
    bytes: u64,
    /// Not to be tried again before this.
    retry_at: Option<Instant>,
    /// The back-off it gets the next time it is left.
    backoff: Duration,
}

/// Where the current segment began: its first frame, the time, and the
/// writer's byte count then.
#[derive(Debug, Clone, Copy)]
struct Mark {
    frame: u32,
    at: Instant,
    written: u64,
}

/// The adaptive plan of one stream.
#[derive(Debug)]
pub(crate) struct Adaptive {
    rungs: Vec<Rung>,
    current: usize,
    fps: f64,
    /// Frames per segment: one second's worth.
    segment_frames: u32,
    segment: Mark,
    /// Whole segments in a row without the queue filling.
    calm: u32,
    /// The rate over the last whole segment, in bytes per second.
    last_rate: Option<f64>,
    /// After a step down: until when the queue filling is the old
    /// resolution's bytes still draining.
    settling_until: Option<Instant>,
}

impl Adaptive {
    /// A plan over `renditions` (lowest first) at `fps`, starting at the
    /// lowest from frame `from`; `written` is the writer's byte count now.
    pub(crate) fn new(renditions: usize, fps: f64, from: u32, now: Instant, written: u64) -> Adaptive {
        let rung = Rung { backoff: FIRST_BACKOFF, ..Rung::default() };
        let segment_frames = (fps.round() as u32).max(1);
        let segment = Mark { frame: from, at: now, written };
        let rungs = vec![rung; renditions];
        Adaptive { rungs, current: 0, fps, segment_frames, segment, calm: 0, last_rate: None, settling_until: None }
    }

    /// The rendition to take the next frame from.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// How many renditions it chooses among.
    pub(crate) fn renditions(&self) -> usize {
        self.rungs.len()
    }

    /// The present choice, as a switch to it (to tell the viewer again).
    pub(crate) fn current_switch(&self) -> Switch {
        Switch { to: self.current, down: false, measured_kbps: kbps(self.last_rate) }
    }

    /// A picture of `bytes` from the current rendition was queued.
    pub(crate) fn queued(&mut self, bytes: usize) {
        let rung = &mut self.rungs[self.current];
        rung.frames += 1;
        rung.bytes += bytes as u64;
    }

    /// After a pause or a seek: the time between is no measurement.
    pub(crate) fn restart(&mut self, from: u32, now: Instant, written: u64) {
        self.segment = Mark { frame: from, at: now, written };
        self.calm = 0;
    }

    /// Before frame `index`: whether to change resolution. `filled` says
    /// whether the viewer's queue was found filling since the last call,
    /// `written` is the writer's byte count.
    pub(crate) fn decide(&mut self, index: u32, now: Instant, written: u64, filled: bool) -> Option<Switch> {
        let rate = self.rate_since_mark(now, written);
        if filled && self.settling_until.is_some_and(|until| now < until) {
            self.calm = 0;
            return None;
        }
        if filled {
            // (Too short a measurement is taken for none: one step down.)
            self.mark(index, now, written, rate);
            self.calm = 0;
            return self.step_down(now, rate);
        }
        if index < self.segment.frame.saturating_add(self.segment_frames) {
            return None;
        }
        // A whole segment went by with room in the queue.
        self.mark(index, now, written, rate);
        self.calm += 1;
        let up = self.current + 1;
        let may_retry = self.rungs.get(up).is_some_and(|rung| rung.retry_at.is_none_or(|at| at <= now));
        if self.calm < CALM_SEGMENTS || !may_retry {
            return None;
        }
        self.calm = 0;
        self.current = up;
        Some(Switch { to: up, down: false, measured_kbps: kbps(self.last_rate) })
    }

    /// Leaves the current rendition for one whose rate fits in `measured`
    /// bytes per second (at least one step down), backing off from it.
    fn step_down(&mut self, now: Instant, measured: Option<f64>) -> Option<Switch> {
        if self.current == 0 {
            return None;
        }
        let left = &mut self.rungs[self.current];
        left.retry_at = Some(now + left.backoff);
        left.backoff = (left.backoff * 2).min(MAX_BACKOFF);
        let fits = |rung: &Rung| match (measured, self.rate_of(rung)) {
            (Some(measured), Some(rate)) => rate <= measured * FIT,
            _ => true, // not seen yet, or nothing measured: the step itself
        };
        let to = (0..self.current).rev().find(|&r| fits(&self.rungs[r])).unwrap_or(0);
        self.current = to;
        let segment = Duration::try_from_secs_f64(f64::from(self.segment_frames) / self.fps).unwrap_or(MAX_BACKOFF);
        self.settling_until = now.checked_add(segment);
        Some(Switch { to, down: true, measured_kbps: kbps(measured.or(self.last_rate)) })
    }

    /// Bytes per second a rendition's pictures take at this frame rate.
    fn rate_of(&self, rung: &Rung) -> Option<f64> {
        (rung.frames > 0).then(|| rung.bytes as f64 / rung.frames as f64 * self.fps)
    }

    /// What the writer got into the socket per second since the segment
    /// began, if that is long enough to tell.
    fn rate_since_mark(&self, now: Instant, written: u64) -> Option<f64> {
        let elapsed = now.saturating_duration_since(self.segment.at);
        (elapsed >= SHORTEST_MEASUREMENT)
            .then(|| written.saturating_sub(self.segment.written) as f64 / elapsed.as_secs_f64())
    }

    fn mark(&mut self, frame: u32, at: Instant, written: u64, rate: Option<f64>) {
        self.last_rate = rate.or(self.last_rate);
        self.segment = Mark { frame, at, written };
    }
}

/// Caps the viewer's socket send buffer at [`SEND_BUFFER_BYTES`]. The
/// kernel grows a send buffer to megabytes on its own; a link too slow for
/// the stream would then fill it for seconds before the writer, and the
/// queue behind it, felt anything — seconds of late pictures before the
/// rule could step down. (For the rest of the connection: chat needs far less.)
pub(crate) fn cap_send_buffer(socket: &TcpStream) {
    #[cfg(unix)]
    if let Err(e) = nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER_BYTES) {
        log::debug!("cannot cap the send buffer: {e}");
    }
    #[cfg(not(unix))]
    let _ = socket;
}

/// Bytes per second as kbit/s (of 1000 bits); 0 when nothing was measured.
fn kbps(rate: Option<f64>) -> u32 {
    rate.map_or(0, |bytes| (bytes * 8.0 / 1000.0).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    /// Plays `seconds` of 30 fps at `rate` bytes per second (what the writer
    /// gets out), `frame_bytes` per picture of each rendition, the queue
    /// filling whenever the current rendition needs more than `rate`.
    fn play(adaptive: &mut Adaptive, start: Instant, seconds: u32, rate: u64, frame_bytes: [u64; 3]) -> Vec<usize> {
        let mut chosen = Vec::new();
        let mut written = 0;
        for index in 0..seconds * 30 {
            let now = start + Duration::from_millis(u64::from(index) * 1000 / 30);
            let needed = frame_bytes[adaptive.current()] * 30;
            written += needed.min(rate) / 30;
            let filled = needed > rate && index % 10 == 9;
            if let Some(switch) = adaptive.decide(index, now, written, filled) {
                assert_eq!(switch.to, adaptive.current());
            }
            adaptive.queued(frame_bytes[adaptive.current()] as usize);
            chosen.push(adaptive.current());
        }
        chosen
    }

    #[test]
    fn climbs_one_step_per_two_calm_seconds() {
        let start = Instant::now();
        let mut adaptive = Adaptive::new(3, 30.0, 0, start, 0);
        let chosen = play(&mut adaptive, start, 6, 100 * MB, [8_000, 30_000, 90_000]);
        assert_eq!(chosen[59], 0);
        assert_eq!(chosen[60], 1);
        assert_eq!(chosen[120], 2);
        assert_eq!(*chosen.last().unwrap(), 2);
    }

    #[test]
    fn a_link_too_slow_for_the_top_steps_down_and_backs_off() {
        let start = Instant::now();
        let mut adaptive = Adaptive::new(3, 30.0, 0, start, 0);
        // 1.5 MB/s: 720p (0.9 MB/s) fits, 1440p (2.7 MB/s) does not.
        let chosen = play(&mut adaptive, start, 30, 1_500_000, [8_000, 30_000, 90_000]);
        let tops: Vec<usize> =
            (0..chosen.len()).filter(|&i| chosen[i] == 2 && (i == 0 || chosen[i - 1] != 2)).collect();
        // Tried at 4 s, then after 8 s, then after 16 s more: three tries in 30 s, not one every few seconds.
        assert_eq!(tops.len(), 3, "{tops:?}");
        assert!(tops[1] - tops[0] >= 8 * 30 && tops[2] - tops[1] >= 16 * 30, "{tops:?}");
        assert_eq!(*chosen.last().unwrap(), 1);
    }

    #[test]
    fn steps_down_as_far_as_the_measured_rate_requires() {
        let start = Instant::now();
        let mut adaptive = Adaptive::new(3, 30.0, 0, start, 0);
        play(&mut adaptive, start, 5, 100 * MB, [8_000, 30_000, 90_000]);
        assert_eq!(adaptive.current(), 2);
        // The link drops to 0.5 MB/s: 720p (0.9 MB/s) does not fit either.
        let Mark { at, written, .. } = adaptive.segment;
        let switch = adaptive.decide(140, at + Duration::from_millis(600), written + 300_000, true).unwrap();
        assert_eq!((switch.to, switch.down), (0, true));
        assert!(switch.measured_kbps > 0);
    }

    #[test]
    fn the_lowest_rendition_has_nowhere_to_go() {
        let start = Instant::now();
        let mut adaptive = Adaptive::new(1, 30.0, 0, start, 0);
        assert_eq!(adaptive.decide(10, start + Duration::from_secs(1), 1000, true), None);
        assert_eq!(adaptive.decide(40, start + Duration::from_secs(4), 2000, false), None, "nothing to climb to");
    }

    #[test]
    fn after_a_step_down_a_segment_of_draining_is_no_reason_to_go_lower() {
        let start = Instant::now();
        let mut adaptive = Adaptive::new(3, 30.0, 0, start, 0);
        play(&mut adaptive, start, 5, 100 * MB, [8_000, 30_000, 90_000]);
        let Mark { at, written, .. } = adaptive.segment;
        let down = adaptive.decide(140, at + Duration::from_millis(500), written + 1_000_000, true).unwrap();
        assert_eq!(down.to, 1);
        // The old resolution's bytes drain: the queue fills again at once.
        assert_eq!(adaptive.decide(141, at + Duration::from_millis(600), written + 1_100_000, true), None);
        // A second later it is the link again: down once more.
        let later = adaptive.decide(170, at + Duration::from_millis(1700), written + 1_200_000, true).unwrap();
        assert_eq!(later.to, 0);
    }

    #[test]
    fn a_pause_or_a_seek_starts_the_calm_count_again() {
        let start = Instant::now();
        let mut adaptive = Adaptive::new(3, 30.0, 0, start, 0);
        assert_eq!(adaptive.decide(30, start + Duration::from_secs(1), 1000, false), None);
        adaptive.restart(200, start + Duration::from_secs(60), 1000);
        assert_eq!(
            adaptive.decide(230, start + Duration::from_secs(61), 2000, false),
            None,
            "one calm segment, not two"
        );
        assert!(adaptive.decide(260, start + Duration::from_secs(62), 3000, false).is_some());
    }
}
