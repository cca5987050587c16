//! Replay protection for the messages this client opens.
//!
//! Run by the reader thread, behind the session's `freshness` lock, after a
//! message's signature has been checked: the signature covers the message id
//! and the timestamp, so a relay can neither replay an old message nor
//! refresh its timestamp, and this memory of ids is all it takes to refuse
//! both.

use std::collections::{HashSet, VecDeque};

use crate::shared::limits::{MESSAGE_MAX_SKEW, REPLAY_MEMORY};

/// A message is shown only if its timestamp is recent and its id has not
/// been seen before.
#[derive(Default)]
pub(crate) struct Freshness {
    /// The ids remembered, to look one up at once.
    seen: HashSet<String>,
    /// The same ids, oldest first: past [`REPLAY_MEMORY`] of them the oldest
    /// is forgotten, so the memory stays bounded.
    order: VecDeque<String>,
}

impl Freshness {
    /// Accepts `id` once, if `sent_at` is within [`MESSAGE_MAX_SKEW`] of `now` (milliseconds).
    pub(crate) fn admit(&mut self, id: &str, sent_at: u64, now: u64) -> Result<(), String> {
        let skew = MESSAGE_MAX_SKEW.as_millis() as u64;
        if sent_at.abs_diff(now) > skew {
            return Err(format!(
                "stale timestamp (sent {} s from now; at most {} s accepted)",
                (sent_at as i128 - now as i128) / 1000,
                skew / 1000
            ));
        }
        if self.seen.contains(id) {
            return Err("replayed (message id seen before)".into());
        }
        if self.order.len() >= REPLAY_MEMORY
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_replays_and_stale_or_future_timestamps() {
        let mut freshness = Freshness::default();
        let now = 1_000_000_000;
        assert!(freshness.admit("a", now - 1000, now).is_ok());
        assert!(freshness.admit("a", now - 1000, now).unwrap_err().contains("replayed"));
        assert!(freshness.admit("b", now - 11 * 60_000, now).unwrap_err().contains("stale"));
        assert!(freshness.admit("c", now + 11 * 60_000, now).unwrap_err().contains("stale"));
        assert!(freshness.admit("b", now + 1000, now).is_ok());
    }
}
