//! Which resolution's file each frame of a stream comes from: the
//! assignment's thirds, fixed when the stream starts, or the adaptive plan
//! ([`Adaptive`]), which decides as the stream goes. Used by the streaming
//! thread.

use std::time::Instant;

use super::adaptive::{Adaptive, Switch};
use super::control::Control;
use crate::shared::message::ServerMessage;
use crate::shared::video::PlayState;

/// Which source each frame comes from.
pub(crate) enum Plan {
    /// The assignment's parts: (source, first frame, last frame).
    Thirds(Vec<(usize, u32, u32)>),
    /// Decided as the stream goes.
    Adaptive(Adaptive),
}

impl Plan {
    pub(crate) fn source(&self, index: u32) -> Option<usize> {
        match self {
            Plan::Thirds(parts) => {
                parts.iter().find(|&&(_, first, last)| (first..=last).contains(&index)).map(|&(i, _, _)| i)
            }
            Plan::Adaptive(adaptive) => Some(adaptive.current()),
        }
    }

    /// The frame ranges each source is read over from here on, as far as
    /// they are known.
    pub(crate) fn ranges(&self, total: u32) -> Vec<(usize, u32, u32)> {
        match self {
            Plan::Thirds(parts) => parts.clone(),
            // Any of them may be switched to: each is positioned.
            Plan::Adaptive(adaptive) => (0..adaptive.renditions()).map(|i| (i, 0, total.saturating_sub(1))).collect(),
        }
    }

    /// With the adaptive plan, its present choice, as a switch to announce.
    pub(crate) fn current(&self) -> Option<Switch> {
        match self {
            Plan::Thirds(_) => None,
            Plan::Adaptive(adaptive) => Some(adaptive.current_switch()),
        }
    }

    pub(crate) fn decide(&mut self, index: u32, control: &Control) -> Option<Switch> {
        let Plan::Adaptive(adaptive) = self else { return None };
        adaptive.decide(index, Instant::now(), control.written(), control.take_filled())
    }

    pub(crate) fn queued(&mut self, bytes: usize) {
        if let Plan::Adaptive(adaptive) = self {
            adaptive.queued(bytes);
        }
    }

    pub(crate) fn restart(&mut self, index: u32, control: &Control) {
        if let Plan::Adaptive(adaptive) = self {
            control.take_filled();
            adaptive.restart(index, Instant::now(), control.written());
        }
    }
}

/// The `stream_state` announcing a switch to `resolution` from frame `next_frame`.
pub(crate) fn switch_state(stream: u32, next_frame: u32, resolution: &str, measured_kbps: u32) -> ServerMessage {
    ServerMessage::StreamState {
        stream,
        state: PlayState::Playing,
        next_frame,
        resolution: Some(resolution.to_string()),
        measured_kbps: Some(measured_kbps),
    }
}
