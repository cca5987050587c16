//! Every connection being served, so that shutdown can wake them and wait
//! for them. The acceptor thread adds a connection; its handler thread
//! removes it when it ends, however it ends; the acceptor, shutting down,
//! wakes and waits for them all.
//!
//! A connection's entry goes as soon as its handler ends, so no socket of a
//! client that left stays open (it would linger in CLOSE_WAIT, for all to
//! see in `ss`).

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use log::warn;

use crate::shared::limits::SHUTDOWN_GRACE;

/// A handle on the socket of every connection being served.
#[derive(Default)]
pub(crate) struct Live {
    sockets: Mutex<HashMap<u64, TcpStream>>,
    /// The number the next connection gets.
    next_id: AtomicU64,
    ended: Condvar,
    /// Set when shutdown begins: handlers stop serving after the frame in hand.
    closing: AtomicBool,
}

impl Live {
    fn sockets(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection, under a number of its own; its entry leaves when
    /// the returned guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>, stream: &TcpStream) -> io::Result<LiveEntry> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.sockets().insert(id, stream.try_clone()?);
        Ok(LiveEntry { live: Arc::clone(self), id })
    }

    /// How many connections are being served.
    pub(crate) fn count(&self) -> usize {
        self.sockets().len()
    }

    /// Whether shutdown has begun.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// From now on handlers stop serving at their next frame.
    pub(crate) fn begin_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Wakes every handler (its writer still sends what is queued) and
    /// waits until each has ended.
    ///
    /// Shutting a socket down for reading wakes a handler blocked in `read`,
    /// but is not enough on its own: Linux still delivers what the peer goes
    /// on sending, which is why handlers also look at [`closing`](Live::closing).
    /// And a client that reads a byte now and then could keep its writer
    /// draining forever: after [`SHUTDOWN_GRACE`], what is still open is
    /// shut both ways, so every writer fails at once and every thread ends.
    pub(crate) fn close_all(&self) {
        self.begin_closing();
        let mut sockets = self.sockets();
        for stream in sockets.values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
        let grace = Instant::now() + SHUTDOWN_GRACE;
        let mut cut = false;
        while !sockets.is_empty() {
            let left = grace.saturating_duration_since(Instant::now());
            if left.is_zero() && !cut {
                warn!("{} connection(s) still draining after {:?}: closing them", sockets.len(), SHUTDOWN_GRACE);
                for stream in sockets.values() {
                    let _ = stream.shutdown(Shutdown::Both);
                }
                cut = true;
            }
            sockets = if cut {
                self.ended.wait(sockets).unwrap_or_else(PoisonError::into_inner)
            } else {
                self.ended.wait_timeout(sockets, left).unwrap_or_else(PoisonError::into_inner).0
            };
        }
    }
}

/// One connection's entry in [`Live`], removed when its handler thread ends
/// (however it ends).
pub(crate) struct LiveEntry {
    live: Arc<Live>,
    id: u64,
}

impl LiveEntry {
    /// The connection's number, unique for the server's lifetime.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        self.live.sockets().remove(&self.id);
        self.live.ended.notify_all();
    }
}
