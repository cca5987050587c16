//! What the client's threads share once it has joined.
//!
//! Three threads use a [`Session`]: the main thread (menu, sending, playing
//! videos), the reader thread (everything the server sends) and the thread
//! the `ctrlc` crate runs the Ctrl-C handler on. Each part that changes has
//! its own lock, taken for one short step and never held across socket I/O
//! or RSA work, so that no thread waits on another's slow work.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::console::Printer;
use super::freshness::Freshness;
use super::peers::Peers;
use crate::shared::connection::FrameWriter;
use crate::shared::crypto::Identity;
use crate::shared::message::ClientMessage;

/// What the client's threads share.
pub(crate) struct Session {
    /// The name we joined under; a message is for us when addressed to it.
    pub(crate) name: String,
    /// Our key pair: the main thread seals and signs, the reader opens.
    pub(crate) identity: Identity,
    /// Prints from any thread without breaking a prompt.
    pub(crate) printer: Printer,
    /// Who else is online and whom we trust: the reader updates it, the menu
    /// reads it.
    peers: Mutex<Peers>,
    /// The socket's writing half. Only the main thread and the Ctrl-C handler
    /// send; the reader never does, so it never blocks on a full socket.
    writer: Mutex<FrameWriter<TcpStream>>,
    /// Message ids seen, against replays. Only the reader thread uses it:
    /// the lock is what lets it change inside the shared session.
    freshness: Mutex<Freshness>,
    /// Set before we send Quit, so the reader takes the close calmly.
    pub(crate) quitting: AtomicBool,
    /// The main thread is waiting for video messages from the reader.
    media_wanted: AtomicBool,
    /// A playback is in progress: Ctrl-C stops it instead of quitting.
    pub(crate) playing: AtomicBool,
    /// Ctrl-C was pressed during playback.
    pub(crate) stop_wanted: AtomicBool,
}

impl Session {
    /// A session at the menu.
    pub(crate) fn new(
        name: String,
        identity: Identity,
        peers: Peers,
        writer: FrameWriter<TcpStream>,
        printer: Printer,
    ) -> Session {
        Session {
            name,
            identity,
            printer,
            peers: Mutex::new(peers),
            writer: Mutex::new(writer),
            freshness: Mutex::new(Freshness::default()),
            quitting: AtomicBool::new(false),
            media_wanted: AtomicBool::new(false),
            playing: AtomicBool::new(false),
            stop_wanted: AtomicBool::new(false),
        }
    }

    /// The peers, locked: keep the guard for one short step.
    pub(crate) fn peers(&self) -> MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The replay memory, locked.
    pub(crate) fn freshness(&self) -> MutexGuard<'_, Freshness> {
        self.freshness.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one message to the server.
    pub(crate) fn send(&self, message: &ClientMessage) -> io::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.send(message).map_err(|e| io::Error::other(e.to_string()))
    }

    /// Says Quit and prints `bye`. From here on the server's close is
    /// expected: the reader thread ends quietly when it comes.
    pub(crate) fn quit(&self) {
        self.quitting.store(true, Ordering::SeqCst);
        let _ = self.send(&ClientMessage::Quit);
        println!("bye");
    }

    pub(crate) fn expect_media(&self, wanted: bool) {
        self.media_wanted.store(wanted, Ordering::SeqCst);
    }

    pub(crate) fn media_wanted(&self) -> bool {
        self.media_wanted.load(Ordering::SeqCst)
    }

    pub(crate) fn set_playing(&self, playing: bool) {
        self.stop_wanted.store(false, Ordering::SeqCst);
        self.playing.store(playing, Ordering::SeqCst);
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop_wanted.load(Ordering::SeqCst)
    }
}
