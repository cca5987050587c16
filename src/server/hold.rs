//! Holding bursts back: traffic a client only watches go by is written at
//! most once per [`BATCH_WINDOW`]. Runs on each client's writer thread.
//!
//! Why a thousand wake-ups cost more than the bytes. When a class of a
//! thousand joins at once, every join queues one announcement (about 500
//! bytes) for every member. Written the moment it is queued, each one costs
//! the member's writer thread a wake-up and a system call, and the member's
//! reader another wake-up and another system call on the far side — a
//! million of each for the whole class, against half a gigabyte of bytes
//! that loopback moves in a fraction of a second. So a writer that sent
//! such traffic less than a window ago holds the next until the window ends,
//! and then writes everything that came meanwhile in one go. While it holds,
//! it does not wait on the outbox, so queueing into it wakes nobody.
//! `docs/BENCHMARKS.md` has the measurement that earned this file its place.
//!
//! Nothing the client is waiting for is held. The hold ends at once when
//! something for the client itself is queued — a message addressed to it, a
//! reply — or when the outbox is a quarter full (it must not overflow while
//! held), and everything queued then goes out in order: the order of a
//! client's messages never changes, so a join announcement is never
//! overtaken by a message from the newcomer. Video keeps flowing meanwhile,
//! and a lone update (the first in a window) is never held.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, never, select};

use super::outbox::{OutboxReceiver, Outgoing};
use crate::shared::frame::FrameError;
use crate::shared::limits::BATCH_WINDOW;

/// When the writer last sent traffic its client only watches go by.
pub(crate) struct Hold {
    /// [`BATCH_WINDOW`], except in tests.
    window: Duration,
    last_sent: Option<Instant>,
}

impl Default for Hold {
    fn default() -> Hold {
        Hold::new(BATCH_WINDOW)
    }
}

impl Hold {
    /// Holds bursts for `window`.
    pub(crate) fn new(window: Duration) -> Hold {
        Hold { window, last_sent: None }
    }

    /// Notes that `item` was written.
    pub(crate) fn written(&mut self, item: &Outgoing) {
        if item.is_deferrable() {
            self.last_sent = Some(Instant::now());
        }
    }

    /// Before `item` is written: if it may wait and such traffic went out
    /// less than a window ago, waits until the window ends or something
    /// urgent is queued, meanwhile passing video to `send_video`. Returns
    /// the video queue ([`never`] once no streaming thread holds it).
    pub(crate) fn wait_if_burst<V>(
        &self,
        item: &Outgoing,
        outbox: &OutboxReceiver,
        mut video: Receiver<V>,
        mut send_video: impl FnMut(V) -> Result<(), FrameError>,
    ) -> Result<Receiver<V>, FrameError> {
        let Some(deadline) = self.last_sent.map(|sent| sent + self.window) else { return Ok(video) };
        if !item.is_deferrable() {
            return Ok(video);
        }
        // Checked before each wait: a stream sent unpaced always has a frame
        // ready, and must not keep the hold going past its end.
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            select! {
                recv(video) -> frame => match frame {
                    Ok(frame) => send_video(frame)?,
                    Err(_) => video = never(),
                },
                recv(outbox.urgent()) -> _ => break,
                default(left) => break,
            }
        }
        Ok(video)
    }
}
