//! The door: how many accepted connections may be waiting to join at once,
//! in all and from one address. The acceptor thread lets connections in;
//! the door-keeper thread lets in those that had to queue; a handler thread
//! leaves when its join succeeds or fails.
//!
//! Until a connection has said hello it holds a thread and a socket but is
//! nobody. Strangers who connect and never say hello could take every
//! thread, so two limits hold:
//!
//! - **From one address**, at most [`MAX_PENDING_PER_ADDRESS`] wait at once.
//!   The next ones from that address queue here, as bare sockets — no
//!   thread, no place among the others — and go in, in order, as that
//!   address's earlier connections finish joining. When the queue has not
//!   moved for [`DOOR_WAIT`], those who waited that long are turned away
//!   with `busy`. A lab behind NAT joins a few at a time, each join taking
//!   a millisecond, and its queue keeps moving however long it is; a
//!   classmate who holds the door with silent connections only delays their
//!   own address, and never the acceptor, nor anyone else. (Someone with
//!   eight addresses — easy over IPv6, or with aliases on one machine —
//!   still fills the 64 below: that is the limit of counting by address.)
//! - **In all**, at most [`MAX_PENDING_JOINS`] wait at once. When that many
//!   are waiting, the acceptor waits up to [`DOOR_WAIT`] for one of them to
//!   finish before accepting more: a whole class connecting at once queues
//!   in the listen backlog instead of being turned away. If no place comes
//!   free in that time, the door is jammed and newcomers are turned away at
//!   once, with `busy`, until a place frees up.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::shared::limits::{
    DOOR_WAIT, MAX_PENDING_JOINS, MAX_PENDING_PER_ADDRESS, MAX_QUEUED_JOINS, MAX_QUEUED_PER_ADDRESS,
};

/// Counts the connections that have not joined yet, and keeps the queues.
#[derive(Default)]
pub(crate) struct Door {
    state: Mutex<DoorState>,
    /// A place came free: for the acceptor, waiting for one.
    freed: Condvar,
    /// A queue may move (a place came free, a connection queued, shutdown):
    /// for the door-keeper.
    queues_changed: Condvar,
}

#[derive(Default)]
struct DoorState {
    waiting: usize,
    jammed: bool,
    /// Only addresses with someone waiting or queued.
    addresses: HashMap<IpAddr, Address>,
    /// Connections queued, at every address.
    queued: usize,
    closing: bool,
}

#[derive(Default)]
struct Address {
    waiting: usize,
    queue: VecDeque<Queued>,
    /// When a connection last went in from the queue.
    moved: Option<Instant>,
}

/// A connection waiting in its address's queue: the socket, and when it was accepted.
struct Queued {
    stream: TcpStream,
    accepted: Instant,
}

/// What the acceptor does with a connection it hands to [`Door::enter`].
pub(crate) enum Admission {
    /// Serve it now.
    Enter(TcpStream, PendingJoin),
    /// The door keeps it in its address's queue.
    Queued,
    /// Turn it away with `busy`.
    Busy(TcpStream),
}

/// What the door-keeper does next, from [`Door::next_turn`].
pub(crate) enum Turn {
    /// A queued connection goes in: serve it.
    Enter { stream: TcpStream, accepted: Instant, pending: PendingJoin },
    /// A connection queued for [`DOOR_WAIT`] while its queue did not move: turn it away with `busy`.
    Expired(TcpStream),
    /// The server is shutting down: turn the queued connection away with `shutting_down`.
    Closing(TcpStream),
}

impl Door {
    fn lock(&self) -> MutexGuard<'_, DoorState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a connection accepted at `accepted` in, if its address and the
    /// door have a place (the latter may take up to [`DOOR_WAIT`] to come
    /// free); queues it behind the others from its address if that address
    /// is at its limit or already has a queue.
    pub(crate) fn enter(self: &Arc<Self>, stream: TcpStream, accepted: Instant) -> Admission {
        let address = address_of(&stream);
        let mut state = self.lock();
        let DoorState { addresses, queued, .. } = &mut *state;
        let from_there = addresses.entry(address).or_default();
        if from_there.waiting >= MAX_PENDING_PER_ADDRESS || !from_there.queue.is_empty() {
            if from_there.queue.len() >= MAX_QUEUED_PER_ADDRESS || *queued >= MAX_QUEUED_JOINS {
                state.forget_if_idle(address);
                return Admission::Busy(stream);
            }
            from_there.queue.push_back(Queued { stream, accepted });
            *queued += 1;
            self.queues_changed.notify_one();
            return Admission::Queued;
        }
        let full = |state: &mut DoorState| state.waiting >= MAX_PENDING_JOINS;
        let wait = if state.jammed { Duration::ZERO } else { DOOR_WAIT };
        let (mut state, _) =
            self.freed.wait_timeout_while(state, wait, |state| full(state)).unwrap_or_else(PoisonError::into_inner);
        if full(&mut state) {
            state.jammed = true;
            state.forget_if_idle(address);
            return Admission::Busy(stream);
        }
        Admission::Enter(stream, self.count_in(&mut state, address))
    }

    /// Blocks until a queued connection may go in or has waited too long for
    /// its queue to move;
    /// `None` once the server is closing and every queue is empty. The
    /// door-keeper thread calls this in a loop.
    pub(crate) fn next_turn(self: &Arc<Self>) -> Option<Turn> {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let mut earliest: Option<Instant> = None;
            let DoorState { waiting, addresses, closing, queued, .. } = &mut *state;
            let room = *waiting < MAX_PENDING_JOINS && !*closing;
            let mut chosen = None;
            for (address, from_there) in addresses.iter_mut() {
                let Some(first) = from_there.queue.front() else { continue };
                let deadline = from_there.moved.map_or(first.accepted, |moved| moved.max(first.accepted)) + DOOR_WAIT;
                let goes_in = room && from_there.waiting < MAX_PENDING_PER_ADDRESS;
                if goes_in || deadline <= now || *closing {
                    if goes_in {
                        from_there.moved = Some(now);
                    }
                    chosen = from_there.queue.pop_front().map(|q| (*address, q, goes_in));
                    *queued -= 1;
                    break;
                }
                earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
            }
            match chosen {
                Some((address, first, true)) => {
                    let pending = self.count_in(&mut state, address);
                    return Some(Turn::Enter { stream: first.stream, accepted: first.accepted, pending });
                }
                Some((address, first, false)) => {
                    let closing = state.closing;
                    state.forget_if_idle(address);
                    return Some(if closing { Turn::Closing(first.stream) } else { Turn::Expired(first.stream) });
                }
                None if state.closing => return None,
                None => {}
            }
            state = match earliest {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(now);
                    self.queues_changed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0
                }
                None => self.queues_changed.wait(state).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Turns every queued connection away from now on, and lets the
    /// door-keeper end once it has.
    pub(crate) fn close(&self) {
        self.lock().closing = true;
        self.queues_changed.notify_all();
    }

    fn count_in(self: &Arc<Self>, state: &mut DoorState, address: IpAddr) -> PendingJoin {
        state.waiting += 1;
        state.addresses.entry(address).or_default().waiting += 1;
        PendingJoin { door: Arc::clone(self), address }
    }

    fn leave(&self, address: IpAddr) {
        let mut state = self.lock();
        state.waiting = state.waiting.saturating_sub(1);
        state.jammed = false;
        if let Some(from_there) = state.addresses.get_mut(&address) {
            from_there.waiting = from_there.waiting.saturating_sub(1);
        }
        state.forget_if_idle(address);
        self.freed.notify_one();
        self.queues_changed.notify_one();
    }
}

impl DoorState {
    /// Drops `address`'s entry once nobody from it waits or queues, so the
    /// table holds only the addresses at the door.
    fn forget_if_idle(&mut self, address: IpAddr) {
        if self.addresses.get(&address).is_some_and(|a| a.waiting == 0 && a.queue.is_empty()) {
            self.addresses.remove(&address);
        }
    }
}

/// The address a connection counts against: an IPv4-mapped IPv6 address
/// as its IPv4 one.
fn address_of(stream: &TcpStream) -> IpAddr {
    stream.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip().to_canonical())
}

/// One connection counted by the [`Door`] until it is dropped: when its join
/// succeeds or fails, or its thread ends before that.
pub(crate) struct PendingJoin {
    door: Arc<Door>,
    address: IpAddr,
}

impl Drop for PendingJoin {
    fn drop(&mut self) {
        self.door.leave(self.address);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// `count` connections to a listener of their own, from 127.0.0.1.
    fn sockets(count: usize) -> (TcpListener, Vec<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = (0..count)
            .map(|_| {
                let _client = TcpStream::connect(address).unwrap();
                let (server_side, _) = listener.accept().unwrap();
                // The client's end is closed here; the server's end is all the door sees.
                server_side
            })
            .collect();
        (listener, accepted)
    }

    #[test]
    fn an_address_over_its_limit_queues_and_goes_in_as_places_free() {
        let door = Arc::new(Door::default());
        let (_listener, streams) = sockets(MAX_PENDING_PER_ADDRESS + 1);
        let mut pending = Vec::new();
        let mut queued = 0;
        for stream in streams {
            match door.enter(stream, Instant::now()) {
                Admission::Enter(_, join) => pending.push(join),
                Admission::Queued => queued += 1,
                Admission::Busy(_) => panic!("turned away"),
            }
        }
        assert_eq!((pending.len(), queued), (MAX_PENDING_PER_ADDRESS, 1));
        pending.pop();
        match door.next_turn() {
            Some(Turn::Enter { .. }) => {}
            _ => panic!("the queued connection did not go in when a place came free"),
        }
    }

    #[test]
    fn a_queued_connection_is_turned_away_after_the_wait_and_at_close() {
        let door = Arc::new(Door::default());
        let (_listener, streams) = sockets(MAX_PENDING_PER_ADDRESS + 2);
        let long_ago = Instant::now().checked_sub(DOOR_WAIT).unwrap();
        let mut pending = Vec::new();
        for (i, stream) in streams.into_iter().enumerate() {
            // The last one queues now, the one before it long ago.
            let accepted = if i == MAX_PENDING_PER_ADDRESS + 1 { Instant::now() } else { long_ago };
            if let Admission::Enter(_, join) = door.enter(stream, accepted) {
                pending.push(join);
            }
        }
        assert!(matches!(door.next_turn(), Some(Turn::Expired(_))), "queued past the wait");
        door.close();
        assert!(matches!(door.next_turn(), Some(Turn::Closing(_))), "turned away at close");
        assert!(door.next_turn().is_none());
    }
}
