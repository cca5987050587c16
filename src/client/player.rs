//! Playing one video: ask for it, show each frame as it comes, print the
//! summary.
//!
//! The main thread runs this, for menu option 2. The reader thread keeps
//! reading the socket and hands video messages over through the
//! [`Inbox`], while it goes on printing chat, joins and leaves — so events
//! keep flowing during playback. Ctrl-C, handled on its own thread, reaches
//! the playback through the session's mode.
//!
//! Like every video player, it keeps the clock rather than every frame:
//! drawing a frame takes time, and when a newer frame has arrived meanwhile
//! the older one is skipped — counted as `dropped`, never decoded. The
//! picture stays on time; `late` still counts what arrived late.
//!
//! The viewer's keys ([`super::keys`]) pause, resume and seek: each becomes
//! a message to the server, which answers with a `stream_state` naming the
//! next frame it sends. Lateness is measured afresh from each answer: a
//! pause is not lateness.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::console::Console;
use super::display::{self, Display, PictureLimit, Wish};
use super::inbox::{Inbox, Media, Picture};
use super::keys::SEEK_STEP_SECONDS;
use super::session::Session;
use crate::shared::message::{ClientMessage, VideoInfo};
use crate::shared::video::{EndReason, FrameHeader, Pace, PlanKind, PlayState};
use crate::shared::visible::{visible, visible_capped};

/// How long to wait for the server before giving up on a reply.
const REPLY_WAIT: Duration = Duration::from_secs(20);

/// Asks the server for its videos; `None` (reported) if it does not answer.
pub(crate) fn request_list(session: &Session, media: &Inbox) -> Option<Vec<VideoInfo>> {
    session.mode.await_media();
    let sent = session.send(&ClientMessage::ListVideos);
    let reply = sent.ok().and_then(|_| {
        loop {
            match media.recv_timeout(REPLY_WAIT) {
                Ok(Media::List(videos)) => break Some(videos),
                Ok(_) => continue, // leftovers of an earlier stream
                Err(_) => break None,
            }
        }
    });
    session.mode.back_to_menu();
    if reply.is_none() {
        session.printer.error("the server did not answer the video list request");
    }
    reply
}

/// How videos are played: the client's options for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Viewing {
    pub(crate) display: Display,
    pub(crate) pace: Pace,
    pub(crate) plan: PlanKind,
}

/// What the client measured of one playback, for the summary line.
#[derive(Default)]
struct Stats {
    video: String,
    /// Frames in the video: announced at the start, corrected at the end.
    total: u32,
    received: u32,
    /// Each resolution in the order first seen, with its frames.
    resolutions: Vec<(String, u32)>,
    /// The summary counts frames per resolution, and names the last one.
    adaptive: bool,
    /// The resolution of the last frame received.
    last_resolution: Option<String>,
    bytes: u64,
    late: u32,
    /// Frames received but never shown: a newer one had arrived before the
    /// screen was ready, or the inbox was full.
    dropped: u32,
    /// When the first frame arrived, and the last: the span `fps` is measured over.
    first: Option<Instant>,
    last: Option<Instant>,
    /// Time spent paused within that span, and since when it is paused now.
    paused_for: Duration,
    paused_since: Option<Instant>,
    /// When the first frame since the start, or since the server's last
    /// `stream_state`, arrived, and its presentation time: the clock the
    /// frames after it are held to.
    anchor: Option<(Instant, u64)>,
    frame_interval: Duration,
}

impl Stats {
    fn record(&mut self, header: &FrameHeader, size: usize, arrived: Instant) {
        self.first.get_or_insert(arrived);
        let (first, first_pts) = *self.anchor.get_or_insert((arrived, header.pts_micros));
        self.last = Some(arrived);
        self.received += 1;
        self.bytes += size as u64;
        if self.last_resolution.as_ref() != Some(&header.resolution) {
            self.last_resolution = Some(header.resolution.clone());
        }
        match self.resolutions.iter_mut().find(|(label, _)| *label == header.resolution) {
            Some((_, count)) => *count += 1,
            None => self.resolutions.push((header.resolution.clone(), 1)),
        }
        // Late: more than one frame interval after its presentation time.
        let due = first + Duration::from_micros(header.pts_micros.saturating_sub(first_pts)) + self.frame_interval;
        if arrived > due {
            self.late += 1;
        }
    }

    /// The server answered a pause, resume or seek: the clock starts again
    /// at the next frame, and time paused is not counted in `fps`.
    fn state(&mut self, state: PlayState) {
        self.anchor = None;
        let now = Instant::now();
        match (state, self.paused_since) {
            (PlayState::Paused, None) => self.paused_since = Some(now),
            (PlayState::Playing, Some(since)) => {
                self.paused_for += now - since;
                self.paused_since = None;
            }
            _ => {}
        }
    }

    fn summary(&self) -> String {
        let fps = match (self.first, self.last) {
            (Some(first), Some(last)) if self.received > 1 && last > first + self.paused_for => {
                (self.received - 1) as f64 / (last - first - self.paused_for).as_secs_f64()
            }
            _ => 0.0,
        };
        let resolutions: Vec<String> = self
            .resolutions
            .iter()
            .map(|(label, count)| match self.adaptive {
                true => format!("{}:{count}", visible(label)),
                false => visible(label).into_owned(),
            })
            .collect();
        let mut summary = format!(
            "summary: video={} frames={}/{} resolutions={} fps={fps:.1} bytes={} late={} dropped={}",
            visible_capped(&self.video),
            self.received,
            self.total,
            resolutions.join(","),
            self.bytes,
            self.late,
            self.dropped
        );
        if self.adaptive
            && let Some(last) = &self.last_resolution
        {
            summary.push_str(&format!(" last={}", visible(last)));
        }
        summary
    }
}

/// Plays `video` until the stream ends or is stopped; prints the summary.
/// With `--display none`, piped stdin's lines `p`, `<`, `>`, `q` steer it.
pub(crate) fn play(session: &Session, media: &Inbox, console: &mut Console, video: &str, viewing: Viewing) {
    let Viewing { display, pace, plan } = viewing;
    session.mode.start_playing();
    if let Err(e) = session.send(&ClientMessage::Play { video: video.to_string(), pace, start: None, plan: Some(plan) })
    {
        session.printer.error(&format!("cannot ask for the video: {e}"));
        session.mode.back_to_menu();
        return;
    }
    let adaptive = plan == PlanKind::Adaptive;
    let mut stats = Stats { video: video.to_string(), adaptive, ..Stats::default() };
    let mut screen: Option<Box<dyn display::Screen>> = None;
    let mut steering = Steering::default();
    let mut limit = PictureLimit::default();
    let mut last_heard = Instant::now();
    // Taken from the inbox while looking for a newer frame, handled next.
    let mut next: Option<Media> = None;
    // On a screen, a frame already overtaken is skipped; `none` decodes every frame.
    let skips_stale = display != Display::None;
    let stdin_steers = display == Display::None;
    media.take_lost();
    loop {
        // What the viewer asked for since the last time round: a key, a line, Ctrl-C.
        let mut wish = if stdin_steers { console.playback_command().unwrap_or(Wish::Continue) } else { Wish::Continue };
        if session.mode.stop_requested() {
            wish = Wish::Stop;
        }
        steering.apply(session, wish);
        let received = match next.take() {
            Some(message) => Ok(message),
            None => media.recv_timeout(Duration::from_millis(100)),
        };
        let message = match received {
            Ok(message) => {
                last_heard = Instant::now();
                message
            }
            Err(RecvTimeoutError::Timeout) => {
                // A server that goes quiet mid-stream must not hold the menu
                // forever; a paused one is quiet on purpose.
                if steering.paused {
                    last_heard = Instant::now();
                } else if last_heard.elapsed() > REPLY_WAIT {
                    session.printer.error("the stream stalled: no video from the server for 20 s");
                    if !steering.stop_sent {
                        request_stop(session, steering.stream);
                    }
                    break;
                }
                // Keep the window responsive (and its keys working) between frames.
                if let Some(screen) = screen.as_mut() {
                    let wish = screen.poll();
                    steering.apply(session, wish);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Media::Start { stream: id, video: name, fps, frames, resolutions } => {
                steering.stream = Some(id);
                (steering.fps, steering.last) = (fps, frames.saturating_sub(1));
                limit = PictureLimit::for_plan(resolutions.iter().map(String::as_str));
                stats.video = name;
                stats.total = frames;
                stats.frame_interval = Duration::from_secs_f64(1.0 / fps.max(0.001));
                match display::open(display, &session.printer) {
                    Ok(opened) => screen = Some(opened),
                    Err(e) => {
                        session.printer.error(&e);
                        steering.apply(session, Wish::Stop);
                    }
                }
            }
            Media::Frame(Picture { header, jpeg, arrived }) => {
                if Some(header.stream) != steering.stream {
                    continue;
                }
                stats.record(&header, jpeg.len(), arrived);
                steering.current = header.sequence;
                if skips_stale {
                    let overtaken;
                    (next, overtaken) = look_ahead(media, steering.stream);
                    if overtaken {
                        stats.dropped += 1;
                        continue;
                    }
                }
                let wish = match (display::decode(&jpeg, limit), screen.as_mut()) {
                    (Ok(picture), Some(screen)) => {
                        // Names from the server reach the title bar or the terminal made visible.
                        screen.show(&visible_capped(&stats.video), &visible_capped(&header.resolution), &picture)
                    }
                    (Err(why), _) => {
                        session.printer.event(&format!("warning: frame {} {why}", header.sequence));
                        Wish::Continue
                    }
                    (Ok(_), None) => Wish::Continue,
                };
                steering.apply(session, wish);
            }
            Media::State { stream: id, state, next_frame } if Some(id) == steering.stream => {
                steering.paused = state == PlayState::Paused;
                steering.current = next_frame;
                stats.state(state);
            }
            Media::End { stream: id, reason, total, message } => {
                if steering.stream.is_some_and(|s| s != id) {
                    continue;
                }
                // The real count, where the file turned out shorter than announced.
                stats.total = total.unwrap_or(stats.total);
                if reason == EndReason::Error {
                    let why = message.unwrap_or_else(|| "unknown error".into());
                    session.printer.error(&format!("playback failed: {}", visible_capped(&why)));
                }
                break;
            }
            Media::List(_) | Media::State { .. } => {}
        }
    }
    drop(screen); // closes the window or gives the terminal back
    session.mode.back_to_menu();
    let lost = media.take_lost();
    stats.received += lost;
    stats.dropped += lost;
    // Exactly one summary line after every playback, even one that never started.
    println!("{}", stats.summary());
}

/// Where the viewer's stream stands, as far as the client knows, and what
/// its keys turn into.
#[derive(Default)]
struct Steering {
    stream: Option<u32>,
    /// As the server last said (or as the viewer asked, until it answers).
    paused: bool,
    /// The frame shown last, or the one the server said comes next.
    current: u32,
    /// The video's last frame, and its frame rate.
    last: u32,
    fps: f64,
    stop_sent: bool,
}

impl Steering {
    /// Sends what `wish` asks of the stream, if it has started.
    fn apply(&mut self, session: &Session, wish: Wish) {
        // Nothing to steer before the start, nor once a stop is on its way.
        let Some(stream) = self.stream.filter(|_| !self.stop_sent) else { return };
        let step = (SEEK_STEP_SECONDS * self.fps).round() as u32;
        let message = match wish {
            Wish::Continue => return,
            Wish::Stop => {
                self.stop_sent = request_stop(session, self.stream);
                return;
            }
            Wish::TogglePause => {
                self.paused = !self.paused;
                if self.paused { ClientMessage::Pause { stream } } else { ClientMessage::Resume { stream } }
            }
            // From where the viewer is, even before the server has answered an earlier seek.
            Wish::Back => {
                self.current = self.current.saturating_sub(step);
                ClientMessage::Seek { stream, frame: self.current }
            }
            Wish::Forward => {
                self.current = self.current.saturating_add(step).min(self.last);
                ClientMessage::Seek { stream, frame: self.current }
            }
        };
        if let Err(e) = session.send(&message) {
            session.printer.error(&format!("cannot steer the stream: {e}"));
        }
    }
}

/// After a frame of `stream`: the next item already waiting, if any, and
/// whether it is a newer frame of the same stream (which makes this one stale).
fn look_ahead(media: &Inbox, stream: Option<u32>) -> (Option<Media>, bool) {
    let next = media.try_recv();
    let newer = matches!(&next, Some(Media::Frame(picture)) if Some(picture.header.stream) == stream);
    (next, newer)
}

fn request_stop(session: &Session, stream: Option<u32>) -> bool {
    match stream {
        Some(stream) => session.send(&ClientMessage::Stop { stream }).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_frames_bytes_resolutions_and_lateness() {
        let t0 = Instant::now();
        let mut stats =
            Stats { video: "Video_2".into(), total: 3, frame_interval: Duration::from_millis(100), ..Stats::default() };
        let header = |sequence: u32, resolution: &str| FrameHeader {
            stream: 1,
            sequence,
            pts_micros: u64::from(sequence) * 100_000,
            resolution: resolution.into(),
        };
        stats.record(&header(0, "240p"), 10, t0);
        stats.record(&header(1, "240p"), 20, t0 + Duration::from_millis(100));
        // Due at 200 ms, one interval of grace: 350 ms is late.
        stats.record(&header(2, "720p"), 30, t0 + Duration::from_millis(350));
        assert_eq!(
            stats.summary(),
            "summary: video=Video_2 frames=3/3 resolutions=240p,720p fps=5.7 bytes=60 late=1 dropped=0"
        );
    }

    #[test]
    fn a_frame_is_stale_only_when_a_newer_frame_of_its_stream_is_waiting() {
        let (mailbox, inbox) = crate::client::inbox::inbox();
        let picture = |stream: u32, sequence: u32| Picture {
            header: FrameHeader { stream, sequence, pts_micros: 0, resolution: "240p".into() },
            jpeg: vec![1; 10],
            arrived: Instant::now(),
        };
        assert!(matches!(look_ahead(&inbox, Some(1)), (None, false)), "nothing waiting: show it");
        mailbox.send_frame(picture(1, 5));
        mailbox.send_frame(picture(2, 0));
        mailbox.send(Media::End { stream: 1, reason: EndReason::Finished, total: None, message: None });
        let (next, overtaken) = look_ahead(&inbox, Some(1));
        assert!(overtaken && matches!(next, Some(Media::Frame(p)) if p.header.sequence == 5));
        let (next, overtaken) = look_ahead(&inbox, Some(1));
        assert!(!overtaken && next.is_some(), "another stream's frame does not overtake");
        let (next, overtaken) = look_ahead(&inbox, Some(1));
        assert!(!overtaken && matches!(next, Some(Media::End { .. })), "the end does not: the last frame is shown");
    }
}
