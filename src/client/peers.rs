//! The client's own copy of the registry: name → public key.
//!
//! Kept up to date from the server's welcome and join/leave announcements,
//! so the client never asks the server for a key (task 3 of the assignment).
//! Keys are stored as the PEM text that arrived and parsed only when first
//! needed: a client in a class of a thousand seals to a handful of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::shared::crypto::{CryptoError, PeerKey};

struct Entry {
    pem: Arc<str>,
    parsed: Option<PeerKey>,
}

/// Everyone else connected, by name.
#[derive(Default)]
pub(crate) struct Peers {
    entries: BTreeMap<String, Entry>,
}

impl Peers {
    /// Records (or replaces) a peer's key.
    pub(crate) fn insert(&mut self, name: &str, pem: Arc<str>) {
        self.entries.insert(name.to_string(), Entry { pem, parsed: None });
    }

    /// Forgets a peer.
    pub(crate) fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// Whether `name` is connected.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The peer's parsed key; `None` if nobody has that name.
    pub(crate) fn key(&mut self, name: &str) -> Option<Result<PeerKey, CryptoError>> {
        let entry = self.entries.get_mut(name)?;
        if let Some(key) = &entry.parsed {
            return Some(Ok(key.clone()));
        }
        Some(PeerKey::from_pem(&entry.pem).inspect(|key| entry.parsed = Some(key.clone())))
    }
}
