//! Replay protection for the messages this client opens.
//!
//! Run by the reader thread, behind the session's `freshness` lock, right
//! after a message's signature has been checked and before anything is
//! decrypted: the signature covers the message id and the timestamp, so a
//! relay can neither replay an old message nor refresh its timestamp, and
//! this memory of ids is all it takes to refuse both — without spending a
//! private-key operation on each replayed copy.
//!
//! A message older than [`MESSAGE_MAX_SKEW`] is refused as stale anyway, so
//! only the ids of the last few minutes need remembering. They are kept
//! beside the client's key (`….seen`, one JSON line per id, appended) so
//! that a client restarted with the same identity still refuses a replay;
//! with `--ephemeral`, in memory only.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use super::peers::{private, replace_privately};
use crate::shared::limits::{MESSAGE_MAX_SKEW, REPLAY_MEMORY};

/// One id remembered: who sent it, the id, and when it was sent.
type Seen = (String, String, u64);

/// A message is shown only if its timestamp is recent and its id has not
/// been seen before from its sender.
#[derive(Default)]
pub(crate) struct Freshness {
    /// (sender, id) of every message remembered, to look one up at once.
    seen: HashSet<(String, String)>,
    /// The same, with when each was sent, in the order admitted: those past
    /// the window, or past [`REPLAY_MEMORY`] of them, are forgotten.
    order: VecDeque<Seen>,
    /// Where they are kept, and the file open for appending.
    file: Option<(PathBuf, Option<File>)>,
    /// Lines in the file: when far more than remembered, it is rewritten.
    lines: usize,
}

impl Freshness {
    /// The memory kept in `path` (read now, pruned to the window), or an
    /// empty one in memory only. A missing or damaged file is an empty memory.
    pub(crate) fn load(path: Option<PathBuf>, now: u64) -> Freshness {
        let mut freshness = Freshness::default();
        let Some(path) = path else { return freshness };
        let text = fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            if let Ok((from, id, sent_at)) = serde_json::from_str::<Seen>(line) {
                freshness.remember(from, id, sent_at);
                freshness.lines += 1;
            }
        }
        freshness.prune(now);
        freshness.file = Some((path, None));
        freshness.compact();
        freshness
    }

    /// Accepts `id` from `from` once, if `sent_at` is within [`MESSAGE_MAX_SKEW`] of `now` (milliseconds).
    pub(crate) fn admit(&mut self, from: &str, id: &str, sent_at: u64, now: u64) -> Result<(), String> {
        let skew = MESSAGE_MAX_SKEW.as_millis() as u64;
        if sent_at.abs_diff(now) > skew {
            return Err(format!(
                "stale timestamp (sent {} s from now; at most {} s accepted)",
                (sent_at as i128 - now as i128) / 1000,
                skew / 1000
            ));
        }
        if self.seen.contains(&(from.to_string(), id.to_string())) {
            return Err("replayed (message id seen before)".into());
        }
        self.prune(now);
        self.remember(from.to_string(), id.to_string(), sent_at);
        self.append(from, id, sent_at);
        Ok(())
    }

    fn remember(&mut self, from: String, id: String, sent_at: u64) {
        if self.order.len() >= REPLAY_MEMORY
            && let Some((from, id, _)) = self.order.pop_front()
        {
            self.seen.remove(&(from, id));
        }
        self.seen.insert((from.clone(), id.clone()));
        self.order.push_back((from, id, sent_at));
    }

    /// Forgets ids sent longer ago than the window: stale, they are refused anyway.
    fn prune(&mut self, now: u64) {
        let oldest = now.saturating_sub(2 * MESSAGE_MAX_SKEW.as_millis() as u64);
        while let Some((_, _, sent_at)) = self.order.front()
            && *sent_at < oldest
        {
            if let Some((from, id, _)) = self.order.pop_front() {
                self.seen.remove(&(from, id));
            }
        }
    }

    /// Appends one id to the file (if there is one); a write that fails
    /// leaves the memory in RAM, which is what it was before.
    fn append(&mut self, from: &str, id: &str, sent_at: u64) {
        let Some((path, file)) = &mut self.file else { return };
        if file.is_none() {
            *file = private(OpenOptions::new().create(true).append(true)).open(&*path).ok();
        }
        let Ok(line) = serde_json::to_string(&(from, id, sent_at)) else { return };
        if let Some(file) = file.as_mut()
            && file.write_all(format!("{line}\n").as_bytes()).is_ok()
        {
            self.lines += 1;
        }
        if self.lines > 2 * self.order.len() + 1000 {
            self.compact();
        }
    }

    /// Rewrites the file with only what is remembered.
    fn compact(&mut self) {
        let Some((path, file)) = &mut self.file else { return };
        let text: String =
            self.order.iter().filter_map(|seen| serde_json::to_string(seen).ok()).map(|line| line + "\n").collect();
        if replace_privately(path, text.as_bytes()).is_ok() {
            *file = None; // reopened on the next append
            self.lines = self.order.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_replays_and_stale_or_future_timestamps() {
        let mut freshness = Freshness::default();
        let now = 1_000_000_000;
        assert!(freshness.admit("bob", "a", now - 1000, now).is_ok());
        assert!(freshness.admit("bob", "a", now - 1000, now).unwrap_err().contains("replayed"));
        assert!(freshness.admit("carol", "a", now - 1000, now).is_ok(), "ids are per sender");
        assert!(freshness.admit("bob", "b", now - 11 * 60_000, now).unwrap_err().contains("stale"));
        assert!(freshness.admit("bob", "c", now + 11 * 60_000, now).unwrap_err().contains("stale"));
        assert!(freshness.admit("bob", "b", now + 1000, now).is_ok());
    }

    #[test]
    fn the_memory_survives_a_restart_and_forgets_what_is_stale_anyway() {
        let path = std::env::temp_dir().join(format!("ciphercast-seen-{}", std::process::id()));
        let _ = fs::remove_file(&path);
        let now = 1_000_000_000;
        let mut first = Freshness::load(Some(path.clone()), now);
        first.admit("bob", "kept", now, now).unwrap();
        first.admit("bob", "old", now - 9 * 60_000, now).unwrap();
        drop(first);
        let mut again = Freshness::load(Some(path.clone()), now + 1000);
        assert!(again.admit("bob", "kept", now, now + 1000).unwrap_err().contains("replayed"));
        // Half an hour on, both are past the window: forgotten, and the file compacted.
        let later = now + 30 * 60_000;
        let _ = Freshness::load(Some(path.clone()), later);
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        fs::write(&path, "not json\n").unwrap();
        let mut damaged = Freshness::load(Some(path.clone()), now);
        assert!(damaged.admit("bob", "x", now, now).is_ok(), "a damaged file is an empty memory");
        fs::remove_file(&path).unwrap();
    }
}
