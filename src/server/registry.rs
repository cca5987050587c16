//! The registry: who is connected, their public keys, and their outboxes.
//!
//! This is the one piece of state every client thread shares, so it sits
//! behind a single [`Mutex`]. Each operation below takes the lock exactly
//! once, and while it holds it does only memory work: map updates and
//! `try_send` into bounded channels, which never block. Encoding JSON, socket
//! I/O and RSA work all happen outside. Because every registry event is
//! queued while the lock is held, every client sees events in one order: a
//! newcomer's welcome always comes before any later join or leave.

use std::collections::BTreeMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{info, warn};
use thiserror::Error;

use crate::shared::crypto::CryptoError;
use crate::shared::frame::FrameError;
use crate::shared::limits::{OUTBOX_BYTES, OUTBOX_MESSAGES, PROTOCOL_VERSION};
use crate::shared::message::{Envelope, LeaveReason, Peer, RefusalCode, ServerMessage, encode};
use crate::shared::names::NameError;

use super::RelayMode;

/// Why a join was refused. The server sends the reason and closes.
#[derive(Debug, Error)]
pub enum Refusal {
    /// Someone connected has the name.
    #[error("name \"{0}\" is taken")]
    NameTaken(String),
    /// The name breaks the rules.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    /// The key is unacceptable.
    #[error("bad key: {0}")]
    BadKey(#[from] CryptoError),
    /// `--max-clients` are connected.
    #[error("server is full ({0} clients)")]
    ServerFull(usize),
    /// Another protocol version.
    #[error("protocol version {0} is not supported (this server speaks {PROTOCOL_VERSION})")]
    Version(u32),
    /// No hello, a malformed hello, or none in time.
    #[error("{0}")]
    Protocol(String),
    /// The server is going away.
    #[error("server is shutting down")]
    ShuttingDown,
}

impl Refusal {
    /// The machine-readable code sent with the reason.
    pub fn code(&self) -> RefusalCode {
        match self {
            Refusal::NameTaken(_) => RefusalCode::NameTaken,
            Refusal::InvalidName(_) => RefusalCode::InvalidName,
            Refusal::BadKey(_) => RefusalCode::BadKey,
            Refusal::ServerFull(_) => RefusalCode::ServerFull,
            Refusal::Version(_) => RefusalCode::Version,
            Refusal::Protocol(_) => RefusalCode::Protocol,
            Refusal::ShuttingDown => RefusalCode::ShuttingDown,
        }
    }
}

/// Why a sealed message was not relayed.
#[derive(Debug, Error)]
pub enum RelayError {
    /// Nobody of that name is connected.
    #[error("no client named \"{0}\"")]
    UnknownRecipient(String),
    /// The relayed message could not be encoded (too large).
    #[error("{0}")]
    Encode(#[from] FrameError),
}

/// Something queued for one client's writer thread.
pub(crate) enum Outgoing {
    /// A complete encoded frame. Shared: a broadcast encodes once and queues
    /// the same bytes for everyone.
    Frame(Arc<[u8]>),
    /// The welcome, encoded by the newcomer's own writer thread from a
    /// snapshot taken under the lock, so the lock is not held while a
    /// thousand keys are turned into JSON.
    Welcome {
        /// The newcomer's name.
        name: Arc<str>,
        /// Everyone else, as the registry held them when the newcomer joined.
        peers: Vec<Peer>,
    },
}

impl Outgoing {
    /// Bytes this item accounts for in the outbox budget.
    fn cost(&self) -> usize {
        match self {
            Outgoing::Frame(bytes) => bytes.len(),
            Outgoing::Welcome { peers, .. } => peers.iter().map(|p| p.name.len() + p.public_key.len()).sum(),
        }
    }

    /// The bytes to write.
    pub(crate) fn encode(&self) -> Result<Arc<[u8]>, FrameError> {
        match self {
            Outgoing::Frame(bytes) => Ok(Arc::clone(bytes)),
            Outgoing::Welcome { name, peers } => {
                let welcome =
                    ServerMessage::Welcome { version: PROTOCOL_VERSION, name: name.to_string(), peers: peers.clone() };
                Ok(encode(&welcome)?.into())
            }
        }
    }
}

/// The sending side of one client's outbox: a bounded queue drained by that
/// client's writer thread. Cloned into the registry so that any thread can
/// queue a message for the client without touching its socket.
#[derive(Clone)]
pub(crate) struct Outbox {
    /// Connection number, unique for the server's lifetime.
    id: u64,
    tx: Sender<Outgoing>,
    /// Bytes queued and not yet written, shared with the writer.
    queued: Arc<AtomicUsize>,
    /// The client's socket, only to shut it down when the client must go.
    stream: Arc<TcpStream>,
}

/// The receiving side of an outbox, owned by the writer thread.
pub(crate) struct OutboxReceiver {
    rx: Receiver<Outgoing>,
    queued: Arc<AtomicUsize>,
}

impl OutboxReceiver {
    /// The channel itself, to wait on it together with another.
    pub(crate) fn channel(&self) -> &Receiver<Outgoing> {
        &self.rx
    }

    /// The next item if one is waiting.
    pub(crate) fn try_recv(&self) -> Option<Outgoing> {
        self.rx.try_recv().ok()
    }

    /// Marks an item as written, returning its bytes to the budget.
    pub(crate) fn written(&self, item: &Outgoing) {
        self.queued.fetch_sub(item.cost(), Ordering::Relaxed);
    }
}

/// The outbox is over its bounds: the client is not reading.
#[derive(Debug)]
pub(crate) struct Overflow;

impl Outbox {
    /// Creates an outbox for connection `id` on `stream`.
    pub(crate) fn new(id: u64, stream: Arc<TcpStream>) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = crossbeam_channel::bounded(OUTBOX_MESSAGES);
        let queued = Arc::new(AtomicUsize::new(0));
        (Outbox { id, tx, queued: Arc::clone(&queued), stream }, OutboxReceiver { rx, queued })
    }

    /// Queues an item without blocking.
    pub(crate) fn push(&self, item: Outgoing) -> Result<(), Overflow> {
        let cost = item.cost();
        if self.queued.fetch_add(cost, Ordering::Relaxed) + cost > OUTBOX_BYTES {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            return Err(Overflow);
        }
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            // A disconnected writer means the client is already leaving.
            Err(TrySendError::Disconnected(_)) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(cost, Ordering::Relaxed);
                Err(Overflow)
            }
        }
    }

    /// Queues a control message.
    pub(crate) fn send(&self, message: &ServerMessage) -> Result<(), Overflow> {
        match encode(message) {
            Ok(bytes) => self.push(Outgoing::Frame(bytes.into())),
            Err(e) => {
                warn!("cannot encode a message for connection {}: {e}", self.id);
                Ok(())
            }
        }
    }

    /// Disconnects the client: shutting the socket down wakes its handler
    /// thread, which then leaves the registry like any disconnect.
    pub(crate) fn kick(&self, why: &str) {
        warn!("disconnecting connection {}: {why}", self.id);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

struct Member {
    public_key: Arc<str>,
    outbox: Outbox,
}

#[derive(Default)]
struct State {
    /// Sorted by name, so lists come out in a stable, readable order.
    members: BTreeMap<Arc<str>, Member>,
    /// Set by [`Registry::close_all`]: no join is accepted after it.
    closed: bool,
}

/// The shared registry of joined clients.
pub(crate) struct Registry {
    state: Mutex<State>,
    max_clients: usize,
}

impl Registry {
    /// An empty registry admitting at most `max_clients`.
    pub(crate) fn new(max_clients: usize) -> Registry {
        Registry { state: Mutex::new(State::default()), max_clients }
    }

    /// Takes the lock. No code panics while holding it, but if one ever
    /// did, the map is still consistent (every update is a single insert or
    /// remove), so the others carry on instead of inheriting the panic.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a client: the newcomer is queued the whole registry, everyone
    /// else only the newcomer's entry, so a join costs O(clients).
    pub(crate) fn join(&self, name: &str, public_key: Arc<str>, outbox: &Outbox) -> Result<usize, Refusal> {
        let name: Arc<str> = name.into();
        let announcement =
            encode(&ServerMessage::PeerJoined { name: Arc::clone(&name), public_key: Arc::clone(&public_key) })
                .map_err(|e| Refusal::Protocol(e.to_string()))?;
        let announcement: Arc<[u8]> = announcement.into();
        let mut overflowed = Vec::new();
        let count = {
            let mut state = self.lock();
            if state.closed {
                return Err(Refusal::ShuttingDown);
            }
            if state.members.contains_key(&name) {
                return Err(Refusal::NameTaken(name.to_string()));
            }
            if state.members.len() >= self.max_clients {
                return Err(Refusal::ServerFull(self.max_clients));
            }
            let peers = state
                .members
                .iter()
                .map(|(name, member)| Peer { name: Arc::clone(name), public_key: Arc::clone(&member.public_key) })
                .collect();
            if outbox.push(Outgoing::Welcome { name: Arc::clone(&name), peers }).is_err() {
                return Err(Refusal::Protocol("cannot queue the welcome".into()));
            }
            for member in state.members.values() {
                if member.outbox.push(Outgoing::Frame(Arc::clone(&announcement))).is_err() {
                    overflowed.push(member.outbox.clone());
                }
            }
            state.members.insert(Arc::clone(&name), Member { public_key, outbox: outbox.clone() });
            state.members.len()
        };
        kick_all(&overflowed);
        info!("{name} joined ({count} online)");
        Ok(count)
    }

    /// Removes the client of connection `outbox` and tells everyone else. Does
    /// nothing if that connection is not (or no longer) the one under `name`.
    pub(crate) fn leave(&self, name: &str, outbox: &Outbox, reason: LeaveReason) {
        let notice = match encode(&ServerMessage::PeerLeft { name: name.into(), reason }) {
            Ok(bytes) => Arc::<[u8]>::from(bytes),
            Err(_) => return,
        };
        let mut overflowed = Vec::new();
        let count = {
            let mut state = self.lock();
            match state.members.get(name) {
                Some(member) if member.outbox.id == outbox.id => {}
                _ => return,
            }
            state.members.remove(name);
            for member in state.members.values() {
                if member.outbox.push(Outgoing::Frame(Arc::clone(&notice))).is_err() {
                    overflowed.push(member.outbox.clone());
                }
            }
            state.members.len()
        };
        kick_all(&overflowed);
        info!("{name} left ({reason}, {count} online)");
    }

    /// Relays a sealed message from `from` to everyone but the sender
    /// ([`RelayMode::Broadcast`], the assignment's demonstration) or to the
    /// addressee only ([`RelayMode::Direct`]). Returns how many received it.
    pub(crate) fn relay(&self, from: &str, envelope: Envelope, mode: RelayMode) -> Result<usize, RelayError> {
        let to = envelope.to.clone();
        let frame: Arc<[u8]> = encode(&ServerMessage::Sealed { from: from.into(), envelope })?.into();
        let mut overflowed = Vec::new();
        let mut delivered = 0;
        {
            let state = self.lock();
            if !state.members.contains_key(to.as_str()) {
                return Err(RelayError::UnknownRecipient(to));
            }
            let mut deliver = |member: &Member| {
                if member.outbox.push(Outgoing::Frame(Arc::clone(&frame))).is_err() {
                    overflowed.push(member.outbox.clone());
                } else {
                    delivered += 1;
                }
            };
            match mode {
                RelayMode::Direct => state.members.get(to.as_str()).into_iter().for_each(&mut deliver),
                RelayMode::Broadcast => {
                    state.members.iter().filter(|(name, _)| name.as_ref() != from).for_each(|(_, m)| deliver(m))
                }
            }
        }
        kick_all(&overflowed);
        Ok(delivered)
    }

    /// Tells every client the server is going away and empties the registry;
    /// later joins are refused.
    pub(crate) fn close_all(&self, reason: &str) {
        let message = ServerMessage::ServerClosing { reason: reason.into() };
        let members = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.members)
        };
        for member in members.values() {
            let _ = member.outbox.send(&message);
        }
    }
}

fn kick_all(outboxes: &[Outbox]) {
    for outbox in outboxes {
        outbox.kick("outbox overflow: the client is not reading its messages");
    }
}
