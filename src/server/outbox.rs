//! The outbox: what is queued for one client and not yet written to its
//! socket. Any thread may push (the client's own handler, another client's
//! handler relaying a message or announcing a join); only the client's
//! writer thread takes.
//!
//! The queue is bounded twice, in items ([`OUTBOX_MESSAGES`]) and in bytes
//! ([`OUTBOX_BYTES`]), and a push never blocks: a client that does not read
//! fills its own outbox, overflows, and is disconnected ([`Outbox::kick`])
//! — its classmates never wait on its socket.
//!
//! An outbox more than half full is **congested** until its writer brings it
//! back down to a quarter. Senders of sealed messages wait while a recipient
//! is congested (see [`flow_control`](super::flow_control)),
//! so a flood slows down its sender instead of overflowing its classmates;
//! the gap between a half and a quarter lets the waiting senders go on
//! together rather than one per item written.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::warn;

use crate::shared::connection::FrameWriter;
use crate::shared::frame::FrameError;
use crate::shared::limits::{OUTBOX_BYTES, OUTBOX_MESSAGES, PROTOCOL_VERSION};
use crate::shared::message::{Peer, ServerMessage, encode};

/// Something queued for one client's writer thread.
pub(crate) enum Outgoing {
    /// One or more complete encoded frames. Shared: a broadcast encodes once
    /// and queues the same bytes for everyone, and a group of joins queues
    /// all its announcements as one item.
    Frames {
        /// The frames, back to back.
        bytes: Arc<[u8]>,
        /// Where this client's part begins (a newcomer in a group of joins
        /// skips the announcements of those admitted before it).
        start: usize,
        /// Traffic this client only watches go by (others joining and
        /// leaving, copies of messages sealed for someone else): its writer
        /// may hold it back for a moment to send a burst of it together.
        deferrable: bool,
    },
    /// The welcome, encoded by the newcomer's own writer thread from a
    /// snapshot taken under the registry lock, so that the lock is not held
    /// while a thousand keys are turned into JSON.
    Welcome {
        /// The newcomer's name.
        name: Arc<str>,
        /// Everyone else, as the registry held them when the newcomer joined.
        peers: Vec<Peer>,
    },
}

impl Outgoing {
    /// Frames for this client, which go out at once.
    pub(crate) fn now(bytes: &Arc<[u8]>) -> Outgoing {
        Outgoing::Frames { bytes: Arc::clone(bytes), start: 0, deferrable: false }
    }

    /// Frames the client only watches go by, which may wait a moment.
    pub(crate) fn deferrable(bytes: &Arc<[u8]>) -> Outgoing {
        Outgoing::deferrable_from(bytes, 0)
    }

    /// The frames from byte `start` on, which the client only watches go by.
    pub(crate) fn deferrable_from(bytes: &Arc<[u8]>, start: usize) -> Outgoing {
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

/// The sending side of one client's outbox. Cheap to clone (one reference
/// count): the registry keeps one per member, and a relay takes copies of
/// its recipients' so that it can queue without holding the registry lock.
/// When the last copy is dropped, the writer sees the queue close and ends.
#[derive(Clone)]
pub(crate) struct Outbox(Arc<Senders>);

struct Senders {
    tx: Sender<Outgoing>,
    /// Signalled when something is queued that must not wait (see
    /// [`OutboxReceiver::urgent`]).
    urgent: Sender<()>,
    shared: Arc<Shared>,
}

/// What the two sides of an outbox share.
struct Shared {
    /// Connection number, unique for the server's lifetime.
    id: u64,
    /// What is queued and not yet written.
    bytes: AtomicUsize,
    items: AtomicUsize,
    /// Set when the writer ends or the client is disconnected: what is left
    /// will never be written, and nobody need wait for it.
    gone: AtomicBool,
    /// Set when the server is shutting down: nothing more is relayed to
    /// this client, and nobody waits for its room.
    shut: AtomicBool,
    /// Whether `congestion` holds a time: read without its lock on every
    /// push and every write, changed only with it held.
    congested: AtomicBool,
    congestion: Mutex<Congestion>,
    /// Signalled when a congestion ends.
    room: Condvar,
    /// The client's socket, only to shut it down when the client must go.
    stream: Arc<TcpStream>,
}

/// A congestion, and the senders waiting for it to end.
#[derive(Default)]
struct Congestion {
    /// When the current congestion began, if there is one.
    since: Option<Instant>,
    /// Senders waiting in [`Outbox::wait_for_room`].
    waiting: usize,
}

/// The receiving side of an outbox, owned by the writer thread.
pub(crate) struct OutboxReceiver {
    rx: Receiver<Outgoing>,
    urgent: Receiver<()>,
    shared: Arc<Shared>,
}

/// The outbox is over its bounds: the client is not reading.
#[derive(Debug)]
pub(crate) struct Overflow;

impl Outbox {
    /// Creates the outbox of connection `id` on `stream`.
    pub(crate) fn new(id: u64, stream: Arc<TcpStream>) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = crossbeam_channel::bounded(OUTBOX_MESSAGES);
        let (urgent, urgent_rx) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            id,
            bytes: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            gone: AtomicBool::new(false),
            shut: AtomicBool::new(false),
            congested: AtomicBool::new(false),
            congestion: Mutex::default(),
            room: Condvar::new(),
            stream,
        });
        let receiver = OutboxReceiver { rx, urgent: urgent_rx, shared: Arc::clone(&shared) };
        (Outbox(Arc::new(Senders { tx, urgent, shared })), receiver)
    }

    /// The connection number.
    pub(crate) fn id(&self) -> u64 {
        self.0.shared.id
    }

    /// Queues an item without blocking.
    pub(crate) fn push(&self, item: Outgoing) -> Result<(), Overflow> {
        let shared = &*self.0.shared;
        let (cost, deferrable) = (item.cost(), item.is_deferrable());
        // Counted before the item is visible to the writer, which uncounts it.
        let bytes = shared.bytes.fetch_add(cost, Ordering::SeqCst) + cost;
        let items = shared.items.fetch_add(1, Ordering::SeqCst) + 1;
        let uncount = || {
            shared.bytes.fetch_sub(cost, Ordering::SeqCst);
            shared.items.fetch_sub(1, Ordering::SeqCst);
        };
        if bytes > OUTBOX_BYTES {
            uncount();
            return Err(Overflow);
        }
        match self.0.tx.try_send(item) {
            Ok(()) => {}
            // A disconnected writer means the client is already leaving.
            Err(TrySendError::Disconnected(_)) => {
                uncount();
                return Ok(());
            }
            Err(TrySendError::Full(_)) => {
                uncount();
                return Err(Overflow);
            }
        }
        let filling = bytes >= OUTBOX_BYTES / 4 || items >= OUTBOX_MESSAGES / 4;
        if !deferrable || filling {
            // A full channel means a signal is pending already.
            let _ = self.0.urgent.try_send(());
        }
        if filling && !shared.congested() {
            shared.check_congestion();
        }
        Ok(())
    }

    /// Queues a control message for the client itself.
    pub(crate) fn send(&self, message: &ServerMessage) -> Result<(), Overflow> {
        match encode(message) {
            Ok(bytes) => self.push(Outgoing::now(&bytes.into())),
            Err(e) => {
                warn!("cannot encode a message for connection {}: {e}", self.id());
                Ok(())
            }
        }
    }

    /// When this outbox's current congestion began, if it is congested.
    pub(crate) fn congestion(&self) -> Option<Instant> {
        let shared = &*self.0.shared;
        if shared.congested() && !self.is_shut() { lock(&shared.congestion).since } else { None }
    }

    /// Messages queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.0.shared.items.load(Ordering::Relaxed)
    }

    /// Whether nothing queued will be written any more (the client was
    /// disconnected, or its writer has ended).
    pub(crate) fn gone(&self) -> bool {
        self.0.shared.gone.load(Ordering::SeqCst)
    }

    /// The server is going away: senders waiting for this client's room go
    /// on at once, and relay nothing more to it (its writer still sends what
    /// is queued, the server's goodbye last).
    pub(crate) fn shut(&self) {
        let shared = &*self.0.shared;
        let _congestion = lock(&shared.congestion);
        shared.shut.store(true, Ordering::SeqCst);
        shared.room.notify_all();
    }

    /// Whether [`shut`](Outbox::shut) was called.
    pub(crate) fn is_shut(&self) -> bool {
        self.0.shared.shut.load(Ordering::SeqCst)
    }

    /// Waits until the congestion ends (the writer has brought the outbox
    /// down to a quarter full, or has ended), or `deadline` passes.
    pub(crate) fn wait_for_room(&self, deadline: Instant) {
        let shared = &*self.0.shared;
        let mut congestion = lock(&shared.congestion);
        congestion.waiting += 1;
        while congestion.since.is_some() && !self.is_shut() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            congestion = match shared.room.wait_timeout(congestion, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        congestion.waiting -= 1;
    }

    /// Disconnects the client: shutting the socket down wakes its handler
    /// thread, which then leaves the registry like any disconnect.
    pub(crate) fn kick(&self, why: &str) {
        warn!("disconnecting connection {}: {why}", self.id());
        let _ = self.0.shared.stream.shutdown(Shutdown::Both);
        self.0.shared.end();
    }
}

impl Shared {
    fn congested(&self) -> bool {
        self.congested.load(Ordering::SeqCst)
    }

    /// Whether more than `1/part` of either budget waits to be written.
    fn fuller_than(&self, part: usize) -> bool {
        !self.gone.load(Ordering::SeqCst)
            && (self.bytes.load(Ordering::SeqCst) > OUTBOX_BYTES / part
                || self.items.load(Ordering::SeqCst) > OUTBOX_MESSAGES / part)
    }

    /// After a push: more than half full begins a congestion.
    fn check_congestion(&self) {
        let mut congestion = lock(&self.congestion);
        if congestion.since.is_none() && self.fuller_than(2) {
            congestion.since = Some(Instant::now());
            self.congested.store(true, Ordering::SeqCst);
        }
        drop(congestion);
        // The writer may have drained the outbox before it could see the
        // congestion: one of us two sees the other's change and ends it.
        self.check_relief();
    }

    /// After a write: down to a quarter (or no writer any more) ends the
    /// congestion, and the senders waiting for it go on.
    fn check_relief(&self) {
        let mut congestion = lock(&self.congestion);
        if congestion.since.is_some() && !self.fuller_than(4) {
            congestion.since = None;
            self.congested.store(false, Ordering::SeqCst);
            self.room.notify_all();
        }
    }

    /// Nothing more will be written: nobody need wait for room.
    fn end(&self) {
        self.gone.store(true, Ordering::SeqCst);
        if self.congested() {
            self.check_relief();
        }
    }
}

impl OutboxReceiver {
    /// The queue itself, to wait on it together with the video queue.
    pub(crate) fn channel(&self) -> &Receiver<Outgoing> {
        &self.rx
    }

    /// The next item if one is waiting.
    pub(crate) fn try_recv(&self) -> Option<Outgoing> {
        self.rx.try_recv().ok()
    }

    /// Signalled when something is queued that must not wait: a message for
    /// the client itself (a sealed message addressed to it, a reply), or
    /// anything once the queue is a quarter full — a writer holding a burst
    /// back must send it now, or the client would be disconnected for an
    /// overflow that is not its fault.
    pub(crate) fn urgent(&self) -> &Receiver<()> {
        &self.urgent
    }

    /// Forgets signals about items already taken from the queue.
    pub(crate) fn clear_urgent(&self) {
        while self.urgent.try_recv().is_ok() {}
    }

    /// Marks an item as written, returning its bytes to the budget.
    pub(crate) fn written(&self, item: &Outgoing) {
        let shared = &*self.shared;
        shared.bytes.fetch_sub(item.cost(), Ordering::SeqCst);
        shared.items.fetch_sub(1, Ordering::SeqCst);
        if shared.congested() {
            shared.check_relief();
        }
    }
}

impl Drop for OutboxReceiver {
    /// The writer has ended: senders waiting for room stop waiting.
    fn drop(&mut self) {
        self.shared.end();
    }
}

/// Takes a lock; what it guards stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;
    use std::time::Duration;

    use super::*;

    fn outbox() -> (Outbox, OutboxReceiver) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Outbox::new(1, Arc::new(stream))
    }

    fn bytes() -> Arc<[u8]> {
        Arc::from(&b"x"[..])
    }

    /// Waits (bounded) until `count` senders are inside `wait_for_room`:
    /// seen under the lock, so each of them is really blocked on the condvar.
    fn await_waiters(outbox: &Outbox, count: usize) {
        for _ in 0..10_000 {
            if lock(&outbox.0.shared.congestion).waiting == count {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
        panic!("{count} sender(s) never started waiting");
    }

    #[test]
    fn a_congested_outbox_holds_senders_until_the_writer_makes_room_or_ends() {
        let (outbox, receiver) = outbox();
        for _ in 0..OUTBOX_MESSAGES / 2 {
            outbox.push(Outgoing::now(&bytes())).unwrap();
        }
        assert!(outbox.congestion().is_none(), "half full is not yet congested");
        outbox.push(Outgoing::now(&bytes())).unwrap();
        assert!(outbox.congestion().is_some(), "more than half full is");
        // A hang detector, not a speed check: a lost wake-up waits this long.
        let deadline = Instant::now() + Duration::from_secs(60);
        let waiter = |outbox: &Outbox| {
            let outbox = outbox.clone();
            thread::spawn(move || outbox.wait_for_room(deadline))
        };
        // The writer writes down to a quarter: the congestion ends there, not
        // before, and the blocked sender is woken.
        let first = waiter(&outbox);
        await_waiters(&outbox, 1);
        while receiver.shared.fuller_than(4) {
            assert!(outbox.congestion().is_some());
            let written = receiver.try_recv().unwrap();
            receiver.written(&written);
        }
        first.join().unwrap();
        assert!(outbox.congestion().is_none() && Instant::now() < deadline);

        // Congested again, and then the writer ends: the sender is woken, and
        // nobody waits for what will never be written.
        for _ in 0..=OUTBOX_MESSAGES / 4 {
            outbox.push(Outgoing::now(&bytes())).unwrap();
        }
        assert!(outbox.congestion().is_some());
        let second = waiter(&outbox);
        await_waiters(&outbox, 1);
        drop(receiver);
        second.join().unwrap();
        assert!(outbox.congestion().is_none() && Instant::now() < deadline);
    }

    #[test]
    fn only_what_must_not_wait_signals_the_writer() {
        let (outbox, receiver) = outbox();
        outbox.push(Outgoing::deferrable(&bytes())).unwrap();
        assert!(receiver.urgent().try_recv().is_err(), "a bystander's copy may wait");
        outbox.push(Outgoing::now(&bytes())).unwrap();
        assert!(receiver.urgent().try_recv().is_ok(), "a message for the client must not");
        receiver.clear_urgent();
        for _ in 2..OUTBOX_MESSAGES / 4 {
            outbox.push(Outgoing::deferrable(&bytes())).unwrap();
        }
        assert!(receiver.urgent().try_recv().is_ok(), "a quarter full must not wait either");
    }

    #[test]
    fn a_full_outbox_overflows_instead_of_blocking() {
        let (outbox, _receiver) = outbox();
        for _ in 0..OUTBOX_MESSAGES {
            outbox.push(Outgoing::deferrable(&bytes())).unwrap();
        }
        assert!(outbox.push(Outgoing::now(&bytes())).is_err());
        let big: Arc<[u8]> = vec![0; OUTBOX_BYTES + 1].into();
        let (other, _rx) = self::outbox();
        assert!(other.push(Outgoing::now(&big)).is_err(), "the byte budget counts too");
    }
}
