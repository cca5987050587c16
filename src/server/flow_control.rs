//! Flow control for sealed messages: a flood slows down its sender instead
//! of disconnecting the classmates it floods. Runs on the sender's handler
//! thread, inside [`Registry::relay`](super::registry::Registry::relay),
//! without the registry lock.
//!
//! Every message for a client goes into its bounded outbox, and an outbox
//! that overflows means a client that does not read: it is disconnected.
//! But a classmate who pauses for a moment while someone sends as fast as
//! they can is not such a client. So before a sealed message is queued for
//! a congested recipient (see [`outbox`](super::outbox)), its sender's
//! thread waits for the recipient's writer to make room — and while it
//! waits, nobody reads the sender's socket, so the sender's own writes
//! block: TCP's flow control carries the slowdown back to the flooder. A
//! recipient that stays congested for [`RELAY_WAIT`] cannot keep up with
//! what the class sends (or reads nothing at all), and is disconnected
//! rather than allowed to set everyone's pace.

use std::time::Instant;

use super::outbox::Outbox;
use crate::shared::limits::RELAY_WAIT;

/// Why a recipient that keeps senders waiting is disconnected.
const TOO_SLOW: &str = "too slow: the client cannot keep up with the messages sent to it";

/// How long a sender waits at most for one message, in all.
pub(crate) fn give_up_at() -> Instant {
    Instant::now() + 2 * RELAY_WAIT
}

/// Waits until none of `recipients` is congested, disconnecting those that
/// have been congested for [`RELAY_WAIT`], or until `give_up` (see
/// [`give_up_at`]); returns the connection numbers of those it disconnected.
pub(crate) fn wait_for_readers(recipients: &[Outbox], give_up: Instant) -> Vec<u64> {
    let mut kicked = Vec::new();
    loop {
        let now = Instant::now();
        let mut wait = None;
        for outbox in recipients {
            match outbox.congestion() {
                Some(since) if now.duration_since(since) >= RELAY_WAIT => {
                    outbox.kick(TOO_SLOW);
                    kicked.push(outbox.id());
                }
                Some(since) if now < give_up && wait.is_none() => wait = Some((outbox, since + RELAY_WAIT)),
                _ => {}
            }
        }
        match wait {
            Some((outbox, deadline)) => outbox.wait_for_room(deadline.min(give_up)),
            None => return kicked,
        }
    }
}
