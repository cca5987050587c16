//! Joins committed in groups. Runs on the newcomers' handler threads.
//!
//! When a class of a thousand joins at once, the registry lock is a queue:
//! a hundred newcomers wait for it while one holds it. Taken one by one,
//! each join then queues its announcement to every member as an item of its
//! own, and every member's writer and reader wakes once per classmate. So
//! the newcomers put themselves on a waiting list ([`Arrivals`]) before they
//! queue for the lock, and whoever gets the lock admits everyone on the list
//! at that moment, one after the other, exactly as if each had joined alone.
//! Their announcements go to each member back to back, as **one** item
//! ([`Announcements`]): one wake-up per group instead of one per newcomer.
//! A database does the same with its log ("group commit"): a thousand
//! commits waiting for one `fsync` share it. Alone, a join is a group of one
//! and waits for nobody. `docs/BENCHMARKS.md` has the measurement that
//! earned this file its place.

use std::sync::{Arc, Mutex, PoisonError};

use super::outbox::{Outbox, Outgoing};

/// Newcomers waiting to be admitted by whoever takes the registry lock next.
pub(crate) struct Arrivals<T>(Mutex<Vec<T>>);

impl<T> Default for Arrivals<T> {
    fn default() -> Self {
        Arrivals(Mutex::new(Vec::new()))
    }
}

impl<T> Arrivals<T> {
    /// Puts a newcomer on the list (before it queues for the registry lock).
    pub(crate) fn push(&self, arrival: T) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(arrival);
    }

    /// Everyone on the list now (called with the registry lock held).
    pub(crate) fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The announcements of one group's admitted newcomers, back to back, and
/// where each begins.
#[derive(Default)]
pub(crate) struct Announcements {
    bytes: Vec<u8>,
    newcomers: Vec<(Outbox, usize)>,
}

impl Announcements {
    /// Adds the announcement of a newcomer just admitted.
    pub(crate) fn add(&mut self, newcomer: &Outbox, announcement: &[u8]) {
        self.newcomers.push((newcomer.clone(), self.bytes.len()));
        self.bytes.extend_from_slice(announcement);
    }

    /// Queues the group's announcements: all of them, as one item, to each
    /// member who was there before the group; to each newcomer, those of the
    /// newcomers admitted after it (its welcome listed those before it).
    /// Returns the outboxes that overflowed, to disconnect once the lock is
    /// released.
    pub(crate) fn queue(self, existing: &[Outbox]) -> Vec<Outbox> {
        let bytes: Arc<[u8]> = self.bytes.into();
        let mut overflowed = Vec::new();
        let mut queue = |outbox: &Outbox, start: usize| {
            if start < bytes.len() && outbox.push(Outgoing::deferrable_from(&bytes, start)).is_err() {
                overflowed.push(outbox.clone());
            }
        };
        for outbox in existing {
            queue(outbox, 0);
        }
        for (i, (outbox, _)) in self.newcomers.iter().enumerate() {
            let after = self.newcomers.get(i + 1).map_or(bytes.len(), |(_, start)| *start);
            queue(outbox, after);
        }
        overflowed
    }
}
