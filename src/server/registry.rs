//! The registry: who is connected, their public keys, and their outboxes.
//!
//! This is the one piece of state every client thread shares, so it sits
//! behind a single [`Mutex`]. Each operation below takes the lock exactly
//! once, and while it holds it does only memory work: map updates and
//! `try_send` into bounded channels, which never block. Encoding JSON, socket
//! I/O and RSA work all happen outside. Because every registry event is
//! queued while the lock is held, every client sees events in one order: a
//! newcomer's welcome always comes before any later join or leave.
//!
//! The one wait is outside the lock: a sealed message for a recipient whose
//! outbox is congested waits for room (see [`Registry::relay`]), so a client
//! sending faster than its classmates can read is slowed down instead of
//! getting them disconnected.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{info, warn};
use thiserror::Error;

use crate::shared::connection::FrameWriter;
use crate::shared::crypto::CryptoError;
use crate::shared::frame::FrameError;
use crate::shared::limits::{OUTBOX_BYTES, OUTBOX_MESSAGES, PROTOCOL_VERSION, RELAY_WAIT};
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
    /// The addressee could not keep up with its messages and was
    /// disconnected instead of receiving this one.
    #[error("\"{0}\" cannot keep up with its messages and was disconnected; the message was not delivered")]
    TooSlow(String),
    /// The relayed message could not be encoded (too large).
    #[error("{0}")]
    Encode(#[from] FrameError),
}

/// Something queued for one client's writer thread.
pub(crate) enum Outgoing {
    /// Encoded frames, back to back, from `start` on. Shared: a broadcast
    /// encodes once and queues the same bytes for everyone, and a batch of
    /// joins queues all its announcements as one item, which the writer
    /// sends with one system call.
    Frames {
        /// One or more complete frames.
        bytes: Arc<[u8]>,
        /// Where this client's part begins (a newcomer in a batch of joins
        /// skips the announcements of those admitted before it).
        start: usize,
        /// Traffic this client only watches go by (others joining and
        /// leaving, copies of messages sealed for someone else): its writer
        /// may hold it back for a moment to send a burst of it together.
        deferrable: bool,
    },
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
    /// One whole encoded frame (or several) for everyone.
    fn shared(bytes: &Arc<[u8]>) -> Outgoing {
        Outgoing::Frames { bytes: Arc::clone(bytes), start: 0, deferrable: false }
    }

    /// Frames the client only watches go by, from `start` on.
    fn deferrable(bytes: &Arc<[u8]>, start: usize) -> Outgoing {
        Outgoing::Frames { bytes: Arc::clone(bytes), start, deferrable: true }
    }

    /// Whether this may wait a moment (see [`BATCH_WINDOW`](crate::shared::limits::BATCH_WINDOW)).
    pub(crate) fn is_deferrable(&self) -> bool {
        matches!(self, Outgoing::Frames { deferrable: true, .. })
    }

    /// Bytes this item accounts for in the outbox budget.
    fn cost(&self) -> usize {
        match self {
            Outgoing::Frames { bytes, start, .. } => bytes.len().saturating_sub(*start),
            Outgoing::Welcome { peers, .. } => peers.iter().map(|p| p.name.len() + p.public_key.len()).sum(),
        }
    }

    /// Writes the item's frames, without flushing.
    pub(crate) fn write_to<W: Write>(&self, writer: &mut FrameWriter<W>) -> Result<(), FrameError> {
        match self {
            Outgoing::Frames { bytes, start, .. } => writer.write_encoded(bytes.get(*start..).unwrap_or_default()),
            Outgoing::Welcome { name, peers } => {
                let welcome =
                    ServerMessage::Welcome { version: PROTOCOL_VERSION, name: name.to_string(), peers: peers.clone() };
                writer.write_encoded(&encode(&welcome)?)
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
    /// What is queued and not yet written, shared with the writer.
    backlog: Arc<Backlog>,
    /// The client's socket, only to shut it down when the client must go.
    stream: Arc<TcpStream>,
    /// Wakes a writer that is holding a burst back (see
    /// [`BATCH_WINDOW`](crate::shared::limits::BATCH_WINDOW)) once the queue
    /// is a quarter full, so that the burst goes out long before it could
    /// overflow.
    nudge: Sender<()>,
}

/// The receiving side of an outbox, owned by the writer thread.
pub(crate) struct OutboxReceiver {
    rx: Receiver<Outgoing>,
    backlog: Arc<Backlog>,
    nudge: Receiver<()>,
}

/// What an outbox holds that its writer has not written yet — the budget
/// that [`Outbox::push`] checks — and whether it is **congested**: more than
/// half full at some push and not yet back down to a quarter. Senders of
/// sealed messages wait while a recipient is congested (see
/// [`Registry::relay`]); the gap between a half and a quarter lets them go
/// on together rather than one per item written.
#[derive(Default)]
struct Backlog {
    bytes: AtomicUsize,
    items: AtomicUsize,
    /// Set when the writer ends or the client is disconnected: what is left
    /// will never be written, and nobody need wait for it.
    writer_gone: AtomicBool,
    /// Whether `congested_since` holds a time: read without the lock.
    congested: AtomicBool,
    /// When the congestion began; changed only with this lock held.
    congested_since: Mutex<Option<Instant>>,
    /// Signalled when the congestion ends.
    room: Condvar,
}

impl Backlog {
    /// Whether more than `1/part` of either budget waits to be written.
    fn fuller_than(&self, part: usize) -> bool {
        !self.writer_gone.load(Ordering::SeqCst)
            && (self.bytes.load(Ordering::SeqCst) > OUTBOX_BYTES / part
                || self.items.load(Ordering::SeqCst) > OUTBOX_MESSAGES / part)
    }

    /// After a push: more than half full begins a congestion.
    fn check_congestion(&self) {
        if !self.congested.load(Ordering::SeqCst) && self.fuller_than(2) {
            let mut since = lock(&self.congested_since);
            if since.is_none() && self.fuller_than(2) {
                *since = Some(Instant::now());
                self.congested.store(true, Ordering::SeqCst);
            }
            drop(since);
            // The writer may have drained the outbox before it could see the
            // flag: one of us two sees the other's change and ends it.
            self.check_relief();
        }
    }

    /// After a write: down to a quarter (or no writer any more) ends it,
    /// and the senders waiting for it go on.
    fn check_relief(&self) {
        if self.congested.load(Ordering::SeqCst) && !self.fuller_than(4) {
            let mut since = lock(&self.congested_since);
            if !self.fuller_than(4) {
                *since = None;
                self.congested.store(false, Ordering::SeqCst);
                self.room.notify_all();
            }
        }
    }

    /// When the current congestion began, if there is one.
    fn congestion(&self) -> Option<Instant> {
        if self.congested.load(Ordering::SeqCst) { *lock(&self.congested_since) } else { None }
    }
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

    /// Signalled when the queue is a quarter full: a writer holding a burst back
    /// must send it now, or the client would be disconnected for an
    /// overflow that is not its fault.
    pub(crate) fn nudged(&self) -> &Receiver<()> {
        &self.nudge
    }

    /// Marks an item as written, returning its bytes to the budget.
    pub(crate) fn written(&self, item: &Outgoing) {
        let backlog = &*self.backlog;
        backlog.bytes.fetch_sub(item.cost(), Ordering::SeqCst);
        backlog.items.fetch_sub(1, Ordering::SeqCst);
        backlog.check_relief();
    }
}

impl Drop for OutboxReceiver {
    /// The writer has ended: senders waiting for room stop waiting.
    fn drop(&mut self) {
        self.backlog.writer_gone.store(true, Ordering::SeqCst);
        self.backlog.check_relief();
    }
}

/// The outbox is over its bounds: the client is not reading.
#[derive(Debug)]
pub(crate) struct Overflow;

impl Outbox {
    /// Creates an outbox for connection `id` on `stream`.
    pub(crate) fn new(id: u64, stream: Arc<TcpStream>) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = crossbeam_channel::bounded(OUTBOX_MESSAGES);
        let (nudge, nudged) = crossbeam_channel::bounded(1);
        let backlog = Arc::new(Backlog::default());
        let outbox = Outbox { id, tx, backlog: Arc::clone(&backlog), stream, nudge };
        (outbox, OutboxReceiver { rx, backlog, nudge: nudged })
    }

    /// Queues an item without blocking.
    pub(crate) fn push(&self, item: Outgoing) -> Result<(), Overflow> {
        let backlog = &*self.backlog;
        let cost = item.cost();
        // Counted before the item is visible to the writer, which uncounts it.
        let bytes = backlog.bytes.fetch_add(cost, Ordering::SeqCst) + cost;
        let items = backlog.items.fetch_add(1, Ordering::SeqCst) + 1;
        let uncount = || {
            backlog.bytes.fetch_sub(cost, Ordering::SeqCst);
            backlog.items.fetch_sub(1, Ordering::SeqCst);
        };
        if bytes > OUTBOX_BYTES {
            uncount();
            return Err(Overflow);
        }
        match self.tx.try_send(item) {
            Ok(()) => {
                if bytes >= OUTBOX_BYTES / 4 || items >= OUTBOX_MESSAGES / 4 {
                    // Full already means a nudge is pending.
                    let _ = self.nudge.try_send(());
                    backlog.check_congestion();
                }
                Ok(())
            }
            // A disconnected writer means the client is already leaving.
            Err(TrySendError::Disconnected(_)) => {
                uncount();
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                uncount();
                Err(Overflow)
            }
        }
    }

    /// When this outbox's current congestion began, if it is congested
    /// (see [`Backlog`]).
    fn congestion(&self) -> Option<Instant> {
        self.backlog.congestion()
    }

    /// Whether nothing queued will be written any more (the client was
    /// disconnected, or its writer has ended).
    fn gone(&self) -> bool {
        self.backlog.writer_gone.load(Ordering::SeqCst)
    }

    /// Waits until the congestion ends (the writer has brought the outbox
    /// down to a quarter full, or has ended), or `deadline` passes.
    fn wait_for_room(&self, deadline: Instant) {
        let backlog = &*self.backlog;
        let mut since = lock(&backlog.congested_since);
        while since.is_some() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            since = match backlog.room.wait_timeout(since, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Queues a control message.
    pub(crate) fn send(&self, message: &ServerMessage) -> Result<(), Overflow> {
        match encode(message) {
            Ok(bytes) => self.push(Outgoing::shared(&bytes.into())),
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
        // Nothing more will be written: nobody need wait for room.
        self.backlog.writer_gone.store(true, Ordering::SeqCst);
        self.backlog.check_relief();
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
    /// Joins waiting to be admitted by whoever takes `state` next.
    arrivals: Mutex<Vec<JoinRequest>>,
    max_clients: usize,
}

/// A newcomer waiting on [`Registry::join`].
struct JoinRequest {
    name: Arc<str>,
    public_key: Arc<str>,
    outbox: Outbox,
    /// Where the admitting thread answers: the count online, or why not.
    reply: Sender<Result<usize, Refusal>>,
}

impl Registry {
    /// An empty registry admitting at most `max_clients`.
    pub(crate) fn new(max_clients: usize) -> Registry {
        Registry { state: Mutex::new(State::default()), arrivals: Mutex::default(), max_clients }
    }

    /// Takes the registry's lock (see [`lock`]).
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds a client: the newcomer is queued the whole registry, everyone
    /// else only the newcomer's entry, so a join costs O(clients).
    ///
    /// Joins are committed in groups. Each newcomer first puts its request
    /// on a waiting list, then takes the lock; whoever holds the lock admits
    /// everyone on the list at that moment, one after the other, and queues
    /// their announcements to each existing member as **one** item. When a
    /// whole class joins at once, each member's writer then wakes and writes
    /// once per group instead of once per newcomer. Alone, a join is a group
    /// of one and waits for nobody.
    pub(crate) fn join(&self, name: &str, public_key: Arc<str>, outbox: &Outbox) -> Result<usize, Refusal> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let request = JoinRequest { name: name.into(), public_key, outbox: outbox.clone(), reply };
        lock(&self.arrivals).push(request);
        let overflowed = {
            let mut state = self.lock();
            // Our own request is in this group, or in one admitted by the
            // thread that held the lock before us, which has answered it.
            let group = std::mem::take(&mut *lock(&self.arrivals));
            admit(&mut state, group, self.max_clients)
        };
        kick_all(&overflowed, NOT_READING);
        let count = answer.try_recv().unwrap_or_else(|_| Err(Refusal::Protocol("the join was lost".into())))?;
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
                if member.outbox.push(Outgoing::deferrable(&notice, 0)).is_err() {
                    overflowed.push(member.outbox.clone());
                }
            }
            state.members.len()
        };
        kick_all(&overflowed, NOT_READING);
        info!("{name} left ({reason}, {count} online)");
    }

    /// Relays a sealed message from `from` to everyone but the sender
    /// ([`RelayMode::Broadcast`], the assignment's demonstration) or to the
    /// addressee only ([`RelayMode::Direct`]). Returns how many received it.
    ///
    /// If a recipient's outbox is congested (see [`Backlog`]), the sender's
    /// thread first waits, without the lock, for its writer to make room: a
    /// client that sends faster than its classmates read is slowed down —
    /// nobody reads its socket meanwhile, so its own writes block — instead
    /// of its classmates being disconnected for an overflow that is not
    /// their fault. A recipient congested for [`RELAY_WAIT`] cannot keep up
    /// with the class (or reads nothing at all): it is disconnected rather
    /// than allowed to set everyone's pace.
    pub(crate) fn relay(&self, from: &str, envelope: Envelope, mode: RelayMode) -> Result<usize, RelayError> {
        let to = envelope.to.clone();
        let frame: Arc<[u8]> = encode(&ServerMessage::Sealed { from: from.into(), envelope })?.into();
        // Bounds the loop: every wait ends in room or in a disconnection,
        // but a sender never waits more than twice RELAY_WAIT in all.
        let give_up = Instant::now() + 2 * RELAY_WAIT;
        let mut addressee_too_slow = false;
        loop {
            let (mut overflowed, mut too_slow, mut congested, mut delivered) = (Vec::new(), Vec::new(), Vec::new(), 0);
            {
                let state = self.lock();
                let Some(addressee) = state.members.get(to.as_str()) else {
                    return Err(RelayError::UnknownRecipient(to));
                };
                let bystanders = state
                    .members
                    .iter()
                    .filter(|(name, _)| mode == RelayMode::Broadcast && name.as_ref() != from && name.as_ref() != to)
                    .map(|(_, member)| &member.outbox);
                let recipients = std::iter::once(&addressee.outbox).chain(bystanders);
                let now = Instant::now();
                for (i, outbox) in recipients.clone().enumerate() {
                    match outbox.congestion() {
                        Some(since) if now.duration_since(since) >= RELAY_WAIT => {
                            addressee_too_slow |= i == 0;
                            too_slow.push(outbox.clone());
                        }
                        Some(since) if now < give_up => congested.push((outbox.clone(), since + RELAY_WAIT)),
                        _ => {}
                    }
                }
                if congested.is_empty() {
                    for (i, outbox) in recipients.enumerate() {
                        if outbox.gone() || too_slow.iter().any(|slow| slow.id == outbox.id) {
                            continue;
                        }
                        // The addressee first and at once; in broadcast mode
                        // everyone else gets a copy they can only watch go
                        // by, which may wait.
                        let item = if i == 0 { Outgoing::shared(&frame) } else { Outgoing::deferrable(&frame, 0) };
                        match outbox.push(item) {
                            Ok(()) => delivered += 1,
                            Err(Overflow) => overflowed.push(outbox.clone()),
                        }
                    }
                }
            }
            kick_all(&too_slow, "too slow: the client cannot keep up with the messages sent to it");
            if congested.is_empty() {
                kick_all(&overflowed, NOT_READING);
                return if addressee_too_slow { Err(RelayError::TooSlow(to)) } else { Ok(delivered) };
            }
            for (outbox, deadline) in &congested {
                outbox.wait_for_room((*deadline).min(give_up));
            }
        }
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

/// Admits a group of newcomers in order, as if each had joined alone, and
/// returns the outboxes that overflowed. Existing members get every
/// announcement in one item; each newcomer gets its welcome (everyone
/// admitted before it), then the announcements of those after it.
fn admit(state: &mut State, group: Vec<JoinRequest>, max_clients: usize) -> Vec<Outbox> {
    let mut overflowed = Vec::new();
    if group.is_empty() {
        return overflowed;
    }
    let existing: Vec<Outbox> = state.members.values().map(|member| member.outbox.clone()).collect();
    // All the group's announcements back to back, and where each begins.
    let mut announcements = Vec::new();
    let mut admitted: Vec<(Outbox, usize)> = Vec::new();
    for JoinRequest { name, public_key, outbox, reply } in group {
        match admit_one(state, max_clients, &name, &public_key, &outbox) {
            Ok(announcement) => {
                admitted.push((outbox.clone(), announcements.len()));
                announcements.extend_from_slice(&announcement);
                state.members.insert(name, Member { public_key, outbox });
                let _ = reply.try_send(Ok(state.members.len()));
            }
            Err(refusal) => {
                let _ = reply.try_send(Err(refusal));
            }
        }
    }
    if admitted.is_empty() {
        return overflowed;
    }
    let announcements: Arc<[u8]> = announcements.into();
    let mut queue = |outbox: &Outbox, start: usize| {
        if start < announcements.len() && outbox.push(Outgoing::deferrable(&announcements, start)).is_err() {
            overflowed.push(outbox.clone());
        }
    };
    for outbox in &existing {
        queue(outbox, 0);
    }
    for (i, (outbox, _)) in admitted.iter().enumerate() {
        let next = admitted.get(i + 1).map_or(announcements.len(), |(_, start)| *start);
        queue(outbox, next);
    }
    overflowed
}

/// Checks one newcomer against the registry as it stands and queues its
/// welcome; returns its encoded announcement.
fn admit_one(
    state: &State,
    max_clients: usize,
    name: &Arc<str>,
    public_key: &Arc<str>,
    outbox: &Outbox,
) -> Result<Vec<u8>, Refusal> {
    if state.closed {
        return Err(Refusal::ShuttingDown);
    }
    if state.members.contains_key(name) {
        return Err(Refusal::NameTaken(name.to_string()));
    }
    if state.members.len() >= max_clients {
        return Err(Refusal::ServerFull(max_clients));
    }
    let announcement =
        encode(&ServerMessage::PeerJoined { name: Arc::clone(name), public_key: Arc::clone(public_key) })
            .map_err(|e| Refusal::Protocol(e.to_string()))?;
    let peers = state
        .members
        .iter()
        .map(|(name, member)| Peer { name: Arc::clone(name), public_key: Arc::clone(&member.public_key) })
        .collect();
    if outbox.push(Outgoing::Welcome { name: Arc::clone(name), peers }).is_err() {
        return Err(Refusal::Protocol("cannot queue the welcome".into()));
    }
    Ok(announcement)
}

/// Takes a lock. No code panics while holding one, but if one ever did, the
/// data is still consistent (every update is a single insert or remove), so
/// the others carry on instead of inheriting the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a client whose outbox overflowed is disconnected.
const NOT_READING: &str = "outbox overflow: the client is not reading its messages";

fn kick_all(outboxes: &[Outbox], why: &str) {
    for outbox in outboxes {
        outbox.kick(why);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::shared::frame::read_frame;
    use crate::shared::message::decode;

    fn outbox(id: u64) -> (Outbox, OutboxReceiver) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Outbox::new(id, Arc::new(stream))
    }

    /// What a client would read from everything queued for it.
    fn read_all(receiver: &OutboxReceiver) -> Vec<String> {
        let mut bytes = Vec::new();
        let mut writer = FrameWriter::new(&mut bytes);
        while let Some(item) = receiver.try_recv() {
            item.write_to(&mut writer).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        let mut rest = &bytes[..];
        let mut seen = Vec::new();
        while !rest.is_empty() {
            match decode::<ServerMessage>(&read_frame(&mut rest, u32::MAX).unwrap()).unwrap() {
                ServerMessage::Welcome { peers, .. } => seen
                    .push(format!("welcome {}", peers.iter().map(|p| p.name.as_ref()).collect::<Vec<_>>().join(","))),
                ServerMessage::PeerJoined { name, .. } => seen.push(format!("joined {name}")),
                other => seen.push(format!("{other:?}")),
            }
        }
        seen
    }

    #[test]
    fn a_group_of_joins_reads_as_if_each_had_joined_alone() {
        let registry = Registry::new(10);
        let (old, old_rx) = outbox(1);
        registry.join("old", "key".into(), &old).unwrap();
        assert_eq!(read_all(&old_rx), ["welcome "]);

        let outboxes: Vec<_> = (2..6).map(outbox).collect();
        let names = ["ann", "bob", "ann", "cy"];
        let mut answers = Vec::new();
        let group = names
            .iter()
            .zip(&outboxes)
            .map(|(name, (outbox, _))| {
                let (reply, answer) = crossbeam_channel::bounded(1);
                answers.push(answer);
                JoinRequest { name: (*name).into(), public_key: "key".into(), outbox: outbox.clone(), reply }
            })
            .collect();
        let overflowed = admit(&mut registry.lock(), group, 10);
        assert!(overflowed.is_empty());

        let answers: Vec<String> = answers.iter().map(|a| format!("{:?}", a.try_recv().unwrap())).collect();
        assert_eq!(answers, ["Ok(2)", "Ok(3)", "Err(NameTaken(\"ann\"))", "Ok(4)"]);
        assert_eq!(read_all(&old_rx), ["joined ann", "joined bob", "joined cy"]);
        assert_eq!(read_all(&outboxes[0].1), ["welcome old", "joined bob", "joined cy"]);
        assert_eq!(read_all(&outboxes[1].1), ["welcome ann,old", "joined cy"]);
        assert!(read_all(&outboxes[2].1).is_empty(), "the refused one is told by its handler, not queued");
        assert_eq!(read_all(&outboxes[3].1), ["welcome ann,bob,old"]);
    }

    #[test]
    fn a_congested_outbox_holds_senders_until_the_writer_makes_room_or_ends() {
        use std::time::Duration;
        let (outbox, receiver) = outbox(1);
        let item = || Outgoing::shared(&Arc::from(&b"x"[..]));
        let congested = |outbox: &Outbox| outbox.congestion().is_some();
        for _ in 0..OUTBOX_MESSAGES / 2 {
            outbox.push(item()).unwrap();
        }
        assert!(!congested(&outbox), "half full is not yet congested");
        outbox.push(item()).unwrap();
        assert!(congested(&outbox), "more than half full is");
        // A hang detector, not a speed check: a lost wake-up waits this long.
        let deadline = Instant::now() + Duration::from_secs(60);
        let waiter = |outbox: &Outbox| {
            let outbox = outbox.clone();
            std::thread::spawn(move || outbox.wait_for_room(deadline))
        };
        // The writer writes down to a quarter: the congestion ends there, not
        // before, and the sender goes on.
        let first = waiter(&outbox);
        std::thread::sleep(Duration::from_millis(50));
        while receiver.backlog.fuller_than(4) {
            assert!(congested(&outbox));
            let written = receiver.try_recv().unwrap();
            receiver.written(&written);
        }
        first.join().unwrap();
        assert!(!congested(&outbox) && Instant::now() < deadline);

        // Congested again, and then the writer ends: the sender goes on, and
        // nobody waits for what will never be written.
        for _ in 0..=OUTBOX_MESSAGES / 4 {
            outbox.push(item()).unwrap();
        }
        assert!(congested(&outbox));
        let second = waiter(&outbox);
        std::thread::sleep(Duration::from_millis(50));
        drop(receiver);
        second.join().unwrap();
        assert!(!congested(&outbox) && Instant::now() < deadline);
    }
}
