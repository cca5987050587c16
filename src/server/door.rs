//! The door: how many accepted connections may be waiting to join at once.
//! The acceptor thread enters; a handler thread leaves when its join
//! succeeds or fails.
//!
//! Until a connection has said hello it holds a thread and a socket but is
//! nobody. Strangers who connect and never say hello could take every
//! thread, so at most [`MAX_PENDING_JOINS`] may wait at once. When that many
//! are waiting, the acceptor waits up to [`DOOR_WAIT`] for one of them to
//! finish before accepting more: a whole class connecting at once queues in
//! the listen backlog instead of being turned away. If no place comes free in
//! that time, the door is jammed (strangers are sitting on every place) and
//! newcomers are turned away at once, with `busy`, until a place frees up.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::shared::limits::{DOOR_WAIT, MAX_PENDING_JOINS};

/// Counts the connections that have not joined yet.
#[derive(Default)]
pub(crate) struct Door {
    state: Mutex<DoorState>,
    freed: Condvar,
}

#[derive(Default)]
struct DoorState {
    waiting: usize,
    jammed: bool,
}

impl Door {
    /// Counts one more waiting connection, if a place is free or comes free
    /// in time; `None` if the newcomer must be turned away.
    pub(crate) fn enter(self: &Arc<Self>) -> Option<PendingJoin> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let full = |state: &mut DoorState| state.waiting >= MAX_PENDING_JOINS;
        let wait = if state.jammed { Duration::ZERO } else { DOOR_WAIT };
        let (mut state, _) =
            self.freed.wait_timeout_while(state, wait, |state| full(state)).unwrap_or_else(PoisonError::into_inner);
        if full(&mut state) {
            state.jammed = true;
            return None;
        }
        state.waiting += 1;
        Some(PendingJoin(Arc::clone(self)))
    }

    fn leave(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.waiting = state.waiting.saturating_sub(1);
        state.jammed = false;
        self.freed.notify_one();
    }
}

/// One connection counted by the [`Door`] until it is dropped: when its join
/// succeeds or fails, or its thread ends before that.
pub(crate) struct PendingJoin(Arc<Door>);

impl Drop for PendingJoin {
    fn drop(&mut self) {
        self.0.leave();
    }
}
