//! The client's own copy of the registry, and whom it trusts.
//!
//! Kept up to date from the server's welcome and join/leave announcements,
//! so the client never asks the server for a key (task 3 of the assignment).
//! Each key is fingerprinted on arrival and checked against the keys seen
//! before, the way SSH checks `known_hosts`: trust on first use, and a loud
//! warning when a name comes back with another key. A key met for the first
//! time is parsed before it is trusted (so nothing unusable is ever written
//! down); one seen before under the same name is recognised by its
//! fingerprint alone.
//!
//! Trust on first use trusts whoever came first. Comparing fingerprints
//! aloud (Signal's safety numbers) turns that into knowledge: a peer the
//! user marked **verified** whose key then changes is a hard stop — nothing
//! is sent to that name until the user verifies the new key.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::shared::crypto::{CryptoError, Fingerprint, PeerKey};
use crate::shared::limits::MAX_MAX_CLIENTS;
use crate::shared::names::{skeleton, validate_name};
use crate::shared::visible::visible;

struct Entry {
    pem: Arc<str>,
    fingerprint: Fingerprint,
    parsed: Option<PeerKey>,
    /// The key we trusted before this one, until the user accepts the new one.
    replaced: Option<Trust>,
}

/// A trusted key: its fingerprint, and whether the user compared it with
/// its owner's and marked it verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trust {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) verified: bool,
}

/// One connected peer, as the Peers menu lists it.
pub(crate) struct PeerView {
    pub(crate) name: String,
    pub(crate) fingerprint: Fingerprint,
    /// Its current key is the one the user verified.
    pub(crate) verified: bool,
    /// The key it had before, while the change is not accepted.
    pub(crate) replaced: Option<Trust>,
}

/// What a peer's arrival means for trust.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// A name never seen before: its key is now trusted.
    New(Fingerprint),
    /// The key we already trust.
    Known,
    /// A name we know, with another key.
    /// A name we know, with another key; `verified`: the old one was verified.
    Changed { was: Fingerprint, now: Fingerprint, verified: bool },
    /// Not a PEM key at all; the peer was not added.
    Unusable,
    /// A name that breaks the naming rules, or our own name (a lying
    /// server); not added, and never written to the known-peers file.
    InvalidName(String),
    /// More peers than any server may have (`MAX_MAX_CLIENTS`); not added.
    TooMany,
}

/// Everyone else connected, by name, and the fingerprints trusted so far.
pub(crate) struct Peers {
    entries: BTreeMap<String, Entry>,
    known: KnownPeers,
    /// Our own name: a peer announced under it is the server lying.
    own: String,
    /// The confusable skeleton of our name and of every name we trust a key
    /// for (connected or not), to the name: a newcomer who looks like one of
    /// them is refused.
    skeletons: HashMap<String, String>,
}

impl Peers {
    /// An empty registry for the client joined as `own`, trusting what `known` trusts.
    pub(crate) fn new(known: KnownPeers, own: &str) -> Peers {
        let mut skeletons: HashMap<String, String> =
            known.trusted.keys().map(|name| (skeleton(name), name.clone())).collect();
        skeletons.insert(skeleton(own), own.to_string());
        Peers { entries: BTreeMap::new(), known, own: own.to_string(), skeletons }
    }

    /// Records a peer's key and says what it means for trust. Call
    /// [`Peers::save_known`] after a batch of arrivals.
    pub(crate) fn insert(&mut self, name: &str, pem: Arc<str>) -> Arrival {
        if let Err(e) = validate_name(name) {
            return Arrival::InvalidName(e.to_string());
        }
        if name == self.own {
            return Arrival::InvalidName("it is your own name".into());
        }
        if self.entries.len() >= MAX_MAX_CLIENTS && !self.entries.contains_key(name) {
            return Arrival::TooMany;
        }
        let look = skeleton(name);
        // (A name trusted already is never refused as a look-alike: two old
        // names may share a skeleton.)
        if self.known.get(name).is_none()
            && let Some(other) = self.skeletons.get(&look).filter(|other| *other != name)
        {
            return Arrival::InvalidName(format!("it looks like \"{}\"", visible(other)));
        }
        let Some(fingerprint) = Fingerprint::of_pem(&pem) else { return Arrival::Unusable };
        let trusted = self.known.get(name);
        // A key not trusted yet is parsed before anything is written down
        // about it (11 µs; a key seen before is known by its fingerprint).
        let mut parsed = None;
        if trusted.map(|t| t.fingerprint) != Some(fingerprint) {
            match PeerKey::from_pem(&pem) {
                Ok(key) => parsed = Some(key),
                Err(_) => return Arrival::Unusable,
            }
        }
        let (arrival, replaced) = match trusted {
            None => {
                self.known.set(name, Trust { fingerprint, verified: false });
                (Arrival::New(fingerprint), None)
            }
            Some(trusted) if trusted.fingerprint == fingerprint => (Arrival::Known, None),
            Some(trusted) => {
                let changed =
                    Arrival::Changed { was: trusted.fingerprint, now: fingerprint, verified: trusted.verified };
                (changed, Some(trusted))
            }
        };
        self.entries.insert(name.to_string(), Entry { pem, fingerprint, parsed, replaced });
        self.skeletons.insert(look, name.to_string());
        arrival
    }

    /// Forgets a peer; false if it was not there (never added). Its trusted
    /// key is kept, and so is its look: a look-alike announced later is
    /// still refused.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        self.entries.remove(name).is_some()
    }

    /// The fingerprint of a connected peer's current key.
    pub(crate) fn fingerprint(&self, name: &str) -> Option<Fingerprint> {
        self.entries.get(name).map(|e| e.fingerprint)
    }

    /// Whether `name` is connected.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// For a peer whose key changed and is not yet accepted: the key trusted
    /// before (and whether it was verified), and the new fingerprint.
    pub(crate) fn unconfirmed_change(&self, name: &str) -> Option<(Trust, Fingerprint)> {
        let entry = self.entries.get(name)?;
        entry.replaced.map(|was| (was, entry.fingerprint))
    }

    /// Accepts a changed key without verifying it: it is trusted from now
    /// on, unverified. Only the key the user was shown (`seen`) is accepted:
    /// false if the peer has another by now, or left. A peer whose old key
    /// was verified must be verified again instead ([`Peers::mark_verified`]).
    pub(crate) fn accept_change(&mut self, name: &str, seen: Fingerprint) -> bool {
        match self.entries.get_mut(name) {
            Some(entry) if entry.fingerprint == seen && entry.replaced.is_some_and(|was| !was.verified) => {
                entry.replaced = None;
                self.known.set(name, Trust { fingerprint: seen, verified: false });
                true
            }
            _ => false,
        }
    }

    /// Marks a connected peer's key `seen` verified (accepting it, if it was
    /// a change): the user compared it with its owner's. False if the peer
    /// has another key by now (it changed while they compared), or left.
    pub(crate) fn mark_verified(&mut self, name: &str, seen: Fingerprint) -> bool {
        match self.entries.get_mut(name) {
            Some(entry) if entry.fingerprint == seen => {
                entry.replaced = None;
                self.known.set(name, Trust { fingerprint: seen, verified: true });
                true
            }
            _ => false,
        }
    }

    /// Every connected peer, sorted by name, with what the user knows of its key.
    pub(crate) fn list(&self) -> Vec<PeerView> {
        let view = |(name, entry): (&String, &Entry)| PeerView {
            name: name.clone(),
            fingerprint: entry.fingerprint,
            verified: self.known.get(name).is_some_and(|t| t.verified && t.fingerprint == entry.fingerprint),
            replaced: entry.replaced,
        };
        self.entries.iter().map(view).collect()
    }

    /// The peer's parsed key; `None` if nobody has that name.
    pub(crate) fn key(&mut self, name: &str) -> Option<Result<PeerKey, CryptoError>> {
        let entry = self.entries.get_mut(name)?;
        if let Some(key) = &entry.parsed {
            return Some(Ok(key.clone()));
        }
        Some(PeerKey::from_pem(&entry.pem).inspect(|key| entry.parsed = Some(key.clone())))
    }

    /// Writes the trusted fingerprints to the known-peers file, if there is one and anything changed.
    pub(crate) fn save_known(&mut self) -> Result<(), String> {
        self.known.save()
    }
}

/// Fingerprints trusted so far: in memory, and in `IDENTITY.known_peers`
/// when the client has an identity file — one `name fingerprint` line each,
/// followed by ` verified` for a key the user verified.
///
/// A name seen for the first time is appended to the file, so a class of a
/// thousand joining costs each client a thousand short appends, not a
/// thousand rewrites of a growing file. Only an accepted key change rewrites
/// the file, into a temporary file renamed over the old one, so a client
/// killed half-way never leaves a truncated list (which would silently turn
/// every changed key into a "new" one).
#[derive(Default)]
pub(crate) struct KnownPeers {
    path: Option<PathBuf>,
    trusted: BTreeMap<String, Trust>,
    /// Lines to append at the next save: names trusted for the first time.
    unsaved: String,
    /// A trusted fingerprint was replaced, an append failed part-way, or the
    /// file lacks its last newline: the next save rewrites the file whole.
    rewrite: bool,
}

impl KnownPeers {
    /// Loads `path` if it exists (a missing file is an empty list).
    pub(crate) fn load(path: PathBuf) -> Result<KnownPeers, String> {
        let mut known = KnownPeers { path: Some(path.clone()), ..KnownPeers::default() };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(known),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        // A last line without its newline — edited by hand, or an append cut
        // short — is rewritten rather than appended to, which would glue the
        // next name onto it.
        known.rewrite = !text.is_empty() && !text.ends_with('\n');
        let lines = text.lines().count();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            // The fingerprint is the last 16 groups, maybe followed by the
            // verified mark (which no group can be mistaken for); the name,
            // which may hold spaces, is the rest.
            let (line, verified) = match line.strip_suffix(VERIFIED_MARK) {
                Some(rest) => (rest, true),
                None => (line, false),
            };
            let parsed = line.rsplitn(17, ' ').collect::<Vec<_>>();
            let fingerprint = (parsed.len() == 17)
                .then(|| parsed[..16].iter().rev().copied().collect::<Vec<_>>().join(" "))
                .and_then(|text| Fingerprint::parse(&text));
            match fingerprint {
                Some(fingerprint) => {
                    known.trusted.insert(parsed[16].to_string(), Trust { fingerprint, verified });
                }
                // What an interrupted append leaves: that name is simply met anew.
                None if known.rewrite && number + 1 == lines => {}
                None => {
                    let expected = "expected `name fingerprint` or `name fingerprint verified`";
                    return Err(format!("{}:{}: {expected}", path.display(), number + 1));
                }
            }
        }
        Ok(known)
    }

    fn get(&self, name: &str) -> Option<Trust> {
        self.trusted.get(name).copied()
    }

    fn set(&mut self, name: &str, trust: Trust) {
        match self.trusted.insert(name.to_string(), trust) {
            None if self.path.is_some() => self.unsaved.push_str(&line(name, trust)),
            None => {}
            Some(before) if before != trust => self.rewrite = true,
            Some(_) => {}
        }
    }

    fn save(&mut self) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let written = if self.rewrite {
            let text: String = self.trusted.iter().map(|(name, trust)| line(name, *trust)).collect();
            replace_privately(path, text.as_bytes())
        } else if !self.unsaved.is_empty() {
            // Whole lines in one write, in append mode.
            let appended = private(OpenOptions::new().create(true).append(true))
                .open(path)
                .and_then(|mut file| file.write_all(self.unsaved.as_bytes()));
            // Part of it may have been written: the next save rewrites the file.
            self.rewrite = appended.is_err();
            appended
        } else {
            return Ok(());
        };
        written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.unsaved.clear();
        self.rewrite = false;
        Ok(())
    }
}

/// What follows a verified key's fingerprint in the known-peers file.
const VERIFIED_MARK: &str = " verified";

/// A known-peers line: `name fingerprint`, and the mark if verified.
fn line(name: &str, trust: Trust) -> String {
    let mark = if trust.verified { VERIFIED_MARK } else { "" };
    format!("{name} {}{mark}\n", trust.fingerprint)
}

/// Options that create a file readable by its owner only (0600).
pub(super) fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Replaces `path` with `bytes` as a whole: written to a new temporary file
/// (created exclusively, so a link planted under its name is never
/// followed), made durable, then renamed over the old one.
pub(super) fn replace_privately(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    let mut file = private(OpenOptions::new().write(true).create_new(true)).open(&temporary)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all()).and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::crypto::Identity;

    /// A fresh directory of this test's own, and the known-peers path in it (no file yet).
    fn empty_known_peers_file(test: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("me.pem.known_peers");
        (dir, path)
    }

    #[test]
    fn trusts_on_first_use_and_flags_a_changed_key_until_accepted() {
        let (one, two) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (dir, path) = empty_known_peers_file("ciphercast-known");

        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        assert_eq!(peers.insert("bob smith", one.public_pem().into()), Arrival::New(one.fingerprint()));
        assert_eq!(peers.insert("bob smith", one.public_pem().into()), Arrival::Known);
        peers.save_known().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("bob smith {}\n", one.fingerprint()));

        // A later run remembers bob, and notices his new key.
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        let arrival = peers.insert("bob smith", two.public_pem().into());
        assert_eq!(arrival, Arrival::Changed { was: one.fingerprint(), now: two.fingerprint(), verified: false });
        let was = Trust { fingerprint: one.fingerprint(), verified: false };
        assert_eq!(peers.unconfirmed_change("bob smith"), Some((was, two.fingerprint())));
        assert!(!peers.accept_change("bob smith", one.fingerprint()), "only the key the user saw is accepted");
        assert!(peers.accept_change("bob smith", two.fingerprint()));
        assert_eq!(peers.unconfirmed_change("bob smith"), None);
        peers.save_known().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("bob smith {}\n", two.fingerprint()));
        assert_eq!(peers.insert("x", "garbage".into()), Arrival::Unusable);
        // A server that announces a name with a newline cannot forge a line of the file.
        let forged = format!("x {}\nbob smith", one.fingerprint());
        assert!(matches!(peers.insert(&forged, one.public_pem().into()), Arrival::InvalidName(_)));
        assert!(!peers.contains(&forged));
        fs::write(&path, "no fingerprint here\n").unwrap();
        assert!(KnownPeers::load(path).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn new_names_are_appended_and_a_change_rewrites_the_file_whole() {
        let (one, two) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (dir, path) = empty_known_peers_file("ciphercast-known-append");
        let line = |name: &str, identity: &Identity| format!("{name} {}\n", identity.fingerprint());

        // A first run meets a and b; a second run, loading the file, meets c and a again.
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        for name in ["b", "a"] {
            peers.insert(name, one.public_pem().into());
            peers.save_known().unwrap();
        }
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        peers.insert("c", one.public_pem().into());
        peers.insert("a", one.public_pem().into());
        peers.save_known().unwrap();
        let first_met_order = [line("b", &one), line("a", &one), line("c", &one)].concat();
        assert_eq!(fs::read_to_string(&path).unwrap(), first_met_order, "each name once, in the order first met");

        // Accepting b's new key rewrites the file, sorted, with b's new fingerprint only.
        assert!(matches!(peers.insert("b", two.public_pem().into()), Arrival::Changed { .. }));
        peers.save_known().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), first_met_order, "an unaccepted change is not saved");
        peers.accept_change("b", two.fingerprint());
        peers.save_known().unwrap();
        let rewritten = [line("a", &one), line("b", &two), line("c", &one)].concat();
        assert_eq!(fs::read_to_string(&path).unwrap(), rewritten);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left behind");
        let reloaded = KnownPeers::load(path.clone()).unwrap();
        assert_eq!(reloaded.get("b").map(|t| t.fingerprint), Some(two.fingerprint()));

        // A file whose last line lost its newline (edited by hand): the next
        // name goes on a line of its own.
        fs::write(&path, rewritten.trim_end()).unwrap();
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        peers.insert("d", one.public_pem().into());
        peers.save_known().unwrap();
        let reloaded = KnownPeers::load(path.clone()).unwrap();
        let (c, d) = (reloaded.get("c").map(|t| t.fingerprint), reloaded.get("d").map(|t| t.fingerprint));
        assert_eq!((c, d), (Some(one.fingerprint()), Some(one.fingerprint())));

        // An append cut short leaves half a line: it is dropped, and the file
        // rewritten whole at the next save.
        let all = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{all}e 3f2a 91c0")).unwrap();
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        assert_eq!(peers.insert("e", two.public_pem().into()), Arrival::New(two.fingerprint()));
        peers.save_known().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{all}{}", line("e", &two)));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_look_alike_of_our_name_or_of_a_known_peer_is_not_added() {
        let (dir, path) = empty_known_peers_file("ciphercast-look-alike");
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        let key: Arc<str> = Identity::generate().unwrap().public_pem().into();
        assert!(matches!(peers.insert("bob", Arc::clone(&key)), Arrival::New(_)));
        let arrival = peers.insert("b\u{043E}b", Arc::clone(&key));
        assert_eq!(arrival, Arrival::InvalidName("it looks like \"bob\"".into()));
        assert!(matches!(peers.insert("m\u{0435}", Arc::clone(&key)), Arrival::InvalidName(_)), "Cyrillic e in me");
        peers.remove("bob");
        assert!(matches!(peers.insert("b\u{043E}b", Arc::clone(&key)), Arrival::InvalidName(_)), "bob left");
        peers.save_known().unwrap();
        // A later run, before bob is back: his look-alike is still refused.
        let mut peers = Peers::new(KnownPeers::load(path).unwrap(), "me");
        assert!(matches!(peers.insert("b\u{043E}b", key), Arrival::InvalidName(_)), "bob is offline");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_verified_key_is_remembered_and_its_change_is_accepted_only_by_verifying_again() {
        let (one, two) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (dir, path) = empty_known_peers_file("ciphercast-verified");
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        peers.insert("bob smith", one.public_pem().into());
        peers.insert("carol", one.public_pem().into());
        assert!(peers.mark_verified("bob smith", one.fingerprint()));
        assert!(!peers.mark_verified("carol", two.fingerprint()), "not the key carol has");
        peers.save_known().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("bob smith {} verified\n", one.fingerprint())), "{text}");

        // A later run: bob is verified; then he comes back with another key.
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        peers.insert("bob smith", one.public_pem().into());
        assert!(peers.list()[0].verified);
        peers.insert("bob smith", two.public_pem().into());
        let (was, _) = peers.unconfirmed_change("bob smith").unwrap();
        assert!(was.verified);
        assert!(!peers.list()[0].verified, "the new key is not the verified one");
        assert!(!peers.accept_change("bob smith", two.fingerprint()));
        assert!(peers.unconfirmed_change("bob smith").is_some(), "a verified peer's change needs verifying");
        assert!(!peers.mark_verified("bob smith", one.fingerprint()), "the old key is not the one to verify");
        assert!(peers.mark_verified("bob smith", two.fingerprint()));
        assert!(peers.unconfirmed_change("bob smith").is_none() && peers.list()[0].verified);
        peers.save_known().unwrap();
        let reloaded = KnownPeers::load(path).unwrap();
        assert_eq!(reloaded.get("bob smith"), Some(Trust { fingerprint: two.fingerprint(), verified: true }));
        assert_eq!(reloaded.get("carol").map(|t| t.verified), Some(false));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_key_that_is_not_a_usable_rsa_key_is_never_trusted_nor_saved() {
        let (dir, path) = empty_known_peers_file("ciphercast-unusable");
        let mut peers = Peers::new(KnownPeers::load(path.clone()).unwrap(), "me");
        // Valid PEM armour and base64, but not a key.
        let not_a_key = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert_eq!(peers.insert("mallory", not_a_key.into()), Arrival::Unusable);
        assert!(!peers.contains("mallory"));
        peers.save_known().unwrap();
        assert!(!path.exists() || fs::read_to_string(&path).unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }
}
