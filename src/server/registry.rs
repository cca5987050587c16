//! The registry: who is connected, their public keys, and the outbox of
//! each. It is the one piece of state every handler thread shares, so it
//! sits behind a single [`Mutex`].
//!
//! The lesson is what happens under the lock, and what must not. Each
//! operation below takes the lock once, and while it holds it does only
//! memory work: map lookups and updates, reference-count clones, and
//! `try_send` into bounded outboxes, which never blocks. Everything slow
//! happens elsewhere: messages are encoded as JSON before the lock is taken
//! (the welcome, which lists everyone, is encoded by the newcomer's own
//! writer thread from a snapshot taken under it), sockets are written only by
//! writer threads, and the RSA work of checking a key is done by the
//! newcomer's handler before it calls [`Registry::join`].
//!
//! Joins and leaves queue their announcements while the lock is held, so
//! every client sees them in one order: a newcomer's welcome always comes
//! before any later join or leave. Joins are admitted in groups when many
//! arrive at once ([`group_commit`](super::group_commit)). A relay only
//! looks its recipients up under the lock; it may then wait for a congested
//! recipient (see [`wait_for_readers`]) and queues the copies after letting go.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use log::info;
use thiserror::Error;

use super::config::RelayMode;
use super::flow_control::{give_up_at, wait_for_readers};
use super::group_commit::{Announcements, Arrivals};
use super::outbox::{Outbox, Outgoing, Overflow};
use super::refusal::Refusal;
use crate::shared::frame::FrameError;
use crate::shared::message::{Envelope, LeaveReason, Peer, ServerMessage, encode};
use crate::shared::names::skeleton;

/// The shared registry of joined clients.
pub(crate) struct Registry {
    state: Mutex<State>,
    /// Newcomers waiting to be admitted by whoever takes `state` next.
    arrivals: Arrivals<Arrival>,
    max_clients: usize,
}

#[derive(Default)]
struct State {
    /// Sorted by name, so lists come out in a stable, readable order.
    members: BTreeMap<Arc<str>, Member>,
    /// Every member's name by its confusable skeleton: one look-alike at a time.
    skeletons: HashMap<String, Arc<str>>,
    /// Set by [`Registry::close_all`]: no join is accepted after it.
    closed: bool,
}

struct Member {
    public_key: Arc<str>,
    outbox: Outbox,
    skeleton: String,
}

/// A newcomer on its way in (see [`Registry::join`]).
struct Arrival {
    name: Arc<str>,
    public_key: Arc<str>,
    outbox: Outbox,
    /// Its name's confusable skeleton, computed before the lock was taken.
    skeleton: String,
    /// Its `peer_joined`, encoded before the lock was taken.
    announcement: Vec<u8>,
    /// Where the admitting thread answers: how many are online, or why not.
    reply: crossbeam_channel::Sender<Result<usize, Refusal>>,
}

impl Registry {
    /// An empty registry admitting at most `max_clients`.
    pub(crate) fn new(max_clients: usize) -> Registry {
        Registry { state: Mutex::new(State::default()), arrivals: Arrivals::default(), max_clients }
    }

    /// Takes the lock. No code panics while holding it, but if one ever did,
    /// the map is still consistent (every update is a single insert or
    /// remove), so the others carry on instead of inheriting the panic.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a client; returns how many are online. The newcomer is queued
    /// the whole registry (its welcome), everyone else only the newcomer's
    /// entry, so a join costs O(clients).
    ///
    /// The newcomer first goes on the waiting list, then takes the lock and
    /// admits everyone on the list — its own arrival is there, or in the
    /// group admitted by the thread that held the lock before it, which has
    /// answered it already.
    pub(crate) fn join(&self, name: &str, public_key: Arc<str>, outbox: &Outbox) -> Result<usize, Refusal> {
        let name: Arc<str> = name.into();
        let announcement = ServerMessage::PeerJoined { name: Arc::clone(&name), public_key: Arc::clone(&public_key) };
        let announcement = encode(&announcement).map_err(|e| Refusal::Protocol(e.to_string()))?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let skeleton = skeleton(&name);
        self.arrivals.push(Arrival {
            name: Arc::clone(&name),
            public_key,
            outbox: outbox.clone(),
            skeleton,
            announcement,
            reply,
        });
        let overflowed = {
            let mut state = self.lock();
            let group = self.arrivals.take();
            self.admit(&mut state, group)
        };
        kick_all(&overflowed);
        let count = answer.try_recv().unwrap_or_else(|_| Err(Refusal::Protocol("the join was lost".into())))?;
        info!("{name} joined ({count} online)");
        Ok(count)
    }

    /// Admits a group of newcomers in order, each checked against the
    /// registry as it stands after the ones before it; returns the outboxes
    /// that overflowed.
    fn admit(&self, state: &mut State, group: Vec<Arrival>) -> Vec<Outbox> {
        let existing: Vec<Outbox> = state.members.values().map(|member| member.outbox.clone()).collect();
        let mut announcements = Announcements::default();
        for arrival in group {
            let answer = self.admit_one(state, &arrival).map(|()| {
                announcements.add(&arrival.outbox, &arrival.announcement);
                state.skeletons.insert(arrival.skeleton.clone(), Arc::clone(&arrival.name));
                let member =
                    Member { public_key: arrival.public_key, outbox: arrival.outbox, skeleton: arrival.skeleton };
                state.members.insert(arrival.name, member);
                state.members.len()
            });
            let _ = arrival.reply.try_send(answer);
        }
        announcements.queue(&existing)
    }

    /// Checks one newcomer and queues its welcome: a snapshot of everyone
    /// else, which its writer thread encodes.
    fn admit_one(&self, state: &State, arrival: &Arrival) -> Result<(), Refusal> {
        if state.closed {
            return Err(Refusal::ShuttingDown);
        }
        if state.members.contains_key(&arrival.name) {
            return Err(Refusal::NameTaken(arrival.name.to_string()));
        }
        if let Some(online) = state.skeletons.get(&arrival.skeleton) {
            return Err(Refusal::Confusable { name: arrival.name.to_string(), online: online.to_string() });
        }
        if state.members.len() >= self.max_clients {
            return Err(Refusal::ServerFull(self.max_clients));
        }
        let peers = state
            .members
            .iter()
            .map(|(name, member)| Peer { name: Arc::clone(name), public_key: Arc::clone(&member.public_key) })
            .collect();
        let welcome = Outgoing::Welcome { name: Arc::clone(&arrival.name), peers };
        arrival.outbox.push(welcome).map_err(|Overflow| Refusal::Protocol("cannot queue the welcome".into()))
    }

    /// Clients joined, and messages queued for them all (for the web page's
    /// counters, once a second).
    pub(crate) fn census(&self) -> (usize, usize) {
        let state = self.lock();
        (state.members.len(), state.members.values().map(|member| member.outbox.queued()).sum())
    }

    /// Removes the client of connection `outbox` and tells everyone else.
    /// Does nothing if that connection is not (or no longer) the one under `name`.
    pub(crate) fn leave(&self, name: &str, outbox: &Outbox, reason: LeaveReason) {
        let Ok(notice) = encode(&ServerMessage::PeerLeft { name: name.into(), reason }) else { return };
        let notice: Arc<[u8]> = notice.into();
        let (count, overflowed) = {
            let mut state = self.lock();
            if state.members.get(name).is_none_or(|member| member.outbox.id() != outbox.id()) {
                return;
            }
            if let Some(member) = state.members.remove(name) {
                state.skeletons.remove(&member.skeleton);
            }
            (state.members.len(), queue_all(state.members.values(), &notice))
        };
        kick_all(&overflowed);
        info!("{name} left ({reason}, {count} online)");
    }

    /// Relays a sealed message from `from` to everyone but the sender
    /// ([`RelayMode::Broadcast`], the assignment's demonstration) or to the
    /// addressee only ([`RelayMode::Direct`]). Returns how many received it.
    ///
    /// The lock is held only to look the recipients up. Then, without it,
    /// the copies are queued: the addressee's first, to go out at once (if
    /// the addressee is congested, the sender waits for its room first, see
    /// [`wait_for_readers`]); then, in broadcast mode, everyone else's, as
    /// traffic they only watch go by, once none of them is congested.
    pub(crate) fn relay(&self, from: &str, envelope: Envelope, mode: RelayMode) -> Result<usize, RelayError> {
        let to = envelope.to.clone();
        let frame: Arc<[u8]> = encode(&ServerMessage::Sealed { from: from.into(), envelope })?.into();
        let (addressee, bystanders): (Outbox, Vec<Outbox>) = {
            let state = self.lock();
            let Some(addressee) = state.members.get(to.as_str()) else {
                return Err(RelayError::UnknownRecipient(to));
            };
            let bystanders = state
                .members
                .iter()
                .filter(|(name, _)| mode == RelayMode::Broadcast && ![from, to.as_str()].contains(&name.as_ref()))
                .map(|(_, member)| member.outbox.clone());
            (addressee.outbox.clone(), bystanders.collect())
        };
        let (mut delivered, mut overflowed) = (0, Vec::new());
        let mut deliver = |outbox: &Outbox, copy: Outgoing| {
            if outbox.gone() || outbox.is_shut() {
                return;
            }
            match outbox.push(copy) {
                Ok(()) => delivered += 1,
                Err(Overflow) => overflowed.push(outbox.clone()),
            }
        };
        // The addressee's copy first: it waits for the addressee's own room
        // only, never for a slow bystander.
        let give_up = give_up_at();
        if !wait_for_readers(std::slice::from_ref(&addressee), give_up).is_empty() {
            return Err(RelayError::TooSlow(to));
        }
        deliver(&addressee, Outgoing::now(&frame));
        // Then everyone else's, once none of them is congested: the sender's
        // thread waits here, so a flood slows down its sender, not its readers.
        wait_for_readers(&bystanders, give_up);
        for outbox in &bystanders {
            deliver(outbox, Outgoing::deferrable(&frame));
        }
        kick_all(&overflowed);
        Ok(delivered)
    }

    /// Tells every client the server is going away and empties the registry;
    /// later joins are refused, and relays waiting for a client's room go
    /// on without delivering.
    pub(crate) fn close_all(&self, reason: &str) {
        let message = ServerMessage::ServerClosing { reason: reason.into() };
        let members = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.members)
        };
        for member in members.values() {
            member.outbox.shut();
            if member.outbox.send(&message).is_err() {
                member.outbox.kick("outbox overflow at shutdown: the client is not reading");
            }
        }
    }
}

/// Queues `frames` (a leave) for each member as traffic it only watches go
/// by; returns the outboxes that overflowed, to disconnect once the lock is
/// released.
fn queue_all<'a>(members: impl Iterator<Item = &'a Member>, frames: &Arc<[u8]>) -> Vec<Outbox> {
    members
        .filter(|member| member.outbox.push(Outgoing::deferrable(frames)).is_err())
        .map(|m| m.outbox.clone())
        .collect()
}

/// Disconnects clients whose outbox overflowed: they are not reading.
fn kick_all(outboxes: &[Outbox]) {
    for outbox in outboxes {
        outbox.kick("outbox overflow: the client is not reading its messages");
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

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::server::outbox::OutboxReceiver;
    use crate::shared::connection::FrameWriter;
    use crate::shared::frame::read_frame;
    use crate::shared::message::decode;

    fn outbox(id: u64) -> (Outbox, OutboxReceiver) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Outbox::new(id, Arc::new(stream))
    }

    /// What a client would read from everything queued for it, and whether
    /// each item was for the client itself (`!`) or only watched (`~`).
    fn read_all(receiver: &OutboxReceiver) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(item) = receiver.try_recv() {
            let mark = if item.is_deferrable() { "~" } else { "!" };
            let mut bytes = Vec::new();
            let mut writer = FrameWriter::new(&mut bytes);
            item.write_to(&mut writer).unwrap();
            writer.flush().unwrap();
            drop(writer);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let message = decode::<ServerMessage>(&read_frame(&mut rest, u32::MAX).unwrap()).unwrap();
                seen.push(describe(mark, message));
            }
        }
        seen
    }

    fn describe(mark: &str, message: ServerMessage) -> String {
        match message {
            ServerMessage::Welcome { peers, .. } => {
                format!("{mark}welcome {}", peers.iter().map(|p| p.name.as_ref()).collect::<Vec<_>>().join(","))
            }
            ServerMessage::PeerJoined { name, .. } => format!("{mark}joined {name}"),
            ServerMessage::PeerLeft { name, .. } => format!("{mark}left {name}"),
            ServerMessage::Sealed { from, envelope } => format!("{mark}sealed {from}>{}", envelope.to),
            ServerMessage::ServerClosing { .. } => format!("{mark}closing"),
            other => format!("{mark}{other:?}"),
        }
    }

    fn envelope(to: &str) -> Envelope {
        Envelope {
            id: "1".into(),
            to: to.into(),
            sent_at: 0,
            wrapped_key: vec![],
            nonce: vec![0; 12],
            ciphertext: vec![],
            signature: vec![],
        }
    }

    /// A registry with ann, bob and cy joined, their outboxes read.
    fn ann_bob_and_cy() -> (Registry, Vec<(Outbox, OutboxReceiver)>) {
        let registry = Registry::new(10);
        let members: Vec<_> = (1..=3).map(outbox).collect();
        for (name, (outbox, _)) in ["ann", "bob", "cy"].iter().zip(&members) {
            registry.join(name, "k".into(), outbox).unwrap();
        }
        for (_, receiver) in &members {
            read_all(receiver);
        }
        (registry, members)
    }

    #[test]
    fn joins_and_leaves_reach_everyone_in_one_order() {
        let registry = Registry::new(10);
        let (ann, ann_rx) = outbox(1);
        let (bob, bob_rx) = outbox(2);
        let (cy, cy_rx) = outbox(3);
        assert_eq!(registry.join("ann", "k".into(), &ann).unwrap(), 1);
        assert_eq!(registry.join("bob", "k".into(), &bob).unwrap(), 2);
        assert!(matches!(registry.join("bob", "k".into(), &cy), Err(Refusal::NameTaken(_))));
        assert_eq!(registry.join("cy", "k".into(), &cy).unwrap(), 3);
        // Only the connection that holds the name can give it up.
        registry.leave("bob", &cy, LeaveReason::Quit);
        registry.leave("bob", &bob, LeaveReason::Quit);
        assert_eq!(read_all(&ann_rx), ["!welcome ", "~joined bob", "~joined cy", "~left bob"]);
        assert_eq!(read_all(&bob_rx), ["!welcome ann", "~joined cy"]);
        assert_eq!(read_all(&cy_rx), ["!welcome ann,bob", "~left bob"]);
    }

    #[test]
    fn a_look_alike_of_a_connected_name_is_refused_until_it_leaves() {
        let registry = Registry::new(10);
        let (bob, _bob_rx) = outbox(1);
        let (fake, _fake_rx) = outbox(2);
        registry.join("bob", "k".into(), &bob).unwrap();
        let cyrillic = "b\u{043E}b";
        assert!(matches!(registry.join(cyrillic, "k".into(), &fake), Err(Refusal::Confusable { .. })));
        registry.leave("bob", &bob, LeaveReason::Quit);
        assert!(registry.join(cyrillic, "k".into(), &fake).is_ok(), "no one to be mistaken for now");
    }

    #[test]
    fn a_group_of_joins_reads_as_if_each_had_joined_alone() {
        let registry = Registry::new(10);
        let (old, old_rx) = outbox(1);
        registry.join("old", "key".into(), &old).unwrap();
        assert_eq!(read_all(&old_rx), ["!welcome "]);

        let outboxes: Vec<_> = (2..6).map(outbox).collect();
        let mut answers = Vec::new();
        let group = ["ann", "bob", "ann", "cy"]
            .iter()
            .zip(&outboxes)
            .map(|(name, (outbox, _))| {
                let (reply, answer) = crossbeam_channel::bounded(1);
                answers.push(answer);
                let announcement =
                    encode(&ServerMessage::PeerJoined { name: (*name).into(), public_key: "key".into() });
                let (public_key, outbox) = ("key".into(), outbox.clone());
                let skeleton = skeleton(name);
                Arrival {
                    name: (*name).into(),
                    public_key,
                    outbox,
                    skeleton,
                    announcement: announcement.unwrap(),
                    reply,
                }
            })
            .collect();
        let overflowed = registry.admit(&mut registry.lock(), group);
        assert!(overflowed.is_empty());

        let answers: Vec<String> = answers.iter().map(|a| format!("{:?}", a.try_recv().unwrap())).collect();
        assert_eq!(answers, ["Ok(2)", "Ok(3)", "Err(NameTaken(\"ann\"))", "Ok(4)"]);
        assert_eq!(read_all(&old_rx), ["~joined ann", "~joined bob", "~joined cy"], "one item for the whole group");
        assert_eq!(read_all(&outboxes[0].1), ["!welcome old", "~joined bob", "~joined cy"]);
        assert_eq!(read_all(&outboxes[1].1), ["!welcome ann,old", "~joined cy"]);
        assert!(read_all(&outboxes[2].1).is_empty(), "the refused one is told by its handler, not queued");
        assert_eq!(read_all(&outboxes[3].1), ["!welcome ann,bob,old"]);
    }

    #[test]
    fn a_slow_bystander_never_delays_the_addressee() {
        let (registry, members) = ann_bob_and_cy();
        // cy has stopped reading: more than half of its outbox waits.
        let (cy, bob_rx) = (&members[2].0, &members[1].1);
        let watched: Arc<[u8]> = Arc::from(&b"x"[..]);
        while cy.congestion().is_none() {
            cy.push(Outgoing::deferrable(&watched)).unwrap();
        }
        std::thread::scope(|scope| {
            let relay = scope.spawn(|| registry.relay("ann", envelope("bob"), RelayMode::Broadcast));
            // A hang detector: the copy is there at once, or after cy is dropped.
            let copy = bob_rx.channel().recv_timeout(std::time::Duration::from_secs(60));
            assert!(copy.is_ok_and(|copy| !copy.is_deferrable()), "bob got no copy");
            assert!(!cy.gone(), "bob's copy waited until the slow bystander was disconnected");
            // ann waits for cy's room; cy never makes any, and is dropped.
            assert_eq!(relay.join().unwrap().unwrap(), 1, "only bob received it");
            assert!(cy.gone());
        });
    }

    #[test]
    fn the_registry_refuses_past_max_clients_and_after_closing() {
        let registry = Registry::new(1);
        let (ann, ann_rx) = outbox(1);
        let (bob, bob_rx) = outbox(2);
        registry.join("ann", "k".into(), &ann).unwrap();
        assert!(matches!(registry.join("bob", "k".into(), &bob), Err(Refusal::ServerFull(1))));
        assert!(read_all(&bob_rx).is_empty(), "a refused newcomer is told by its handler, not queued");
        registry.leave("ann", &ann, LeaveReason::Quit);
        registry.join("bob", "k".into(), &bob).unwrap();

        registry.close_all("bye");
        assert_eq!(read_all(&bob_rx), ["!welcome ", "!closing"]);
        let (cy, _) = outbox(3);
        assert!(matches!(registry.join("cy", "k".into(), &cy), Err(Refusal::ShuttingDown)));
        assert_eq!(read_all(&ann_rx), ["!welcome "], "ann had left before the close");
    }

    #[test]
    fn a_relay_goes_to_the_addressee_at_once_and_to_bystanders_in_broadcast_only() {
        let (registry, members) = ann_bob_and_cy();
        assert_eq!(registry.relay("ann", envelope("bob"), RelayMode::Broadcast).unwrap(), 2);
        assert!(read_all(&members[0].1).is_empty(), "the sender gets no copy");
        assert_eq!(read_all(&members[1].1), ["!sealed ann>bob"]);
        assert_eq!(read_all(&members[2].1), ["~sealed ann>bob"]);

        assert_eq!(registry.relay("ann", envelope("bob"), RelayMode::Direct).unwrap(), 1);
        assert_eq!(read_all(&members[1].1), ["!sealed ann>bob"]);
        assert!(read_all(&members[2].1).is_empty());

        let unknown = registry.relay("ann", envelope("zed"), RelayMode::Broadcast);
        assert!(matches!(unknown, Err(RelayError::UnknownRecipient(_))));
    }
}
