//! What the client's threads share once it has joined, and the one mode
//! that tells each of them what the main thread is doing.
//!
//! Three threads use a [`Session`]: the main thread (menu, sending, playing
//! videos), the reader thread (everything the server sends) and the thread
//! the `ctrlc` crate runs the Ctrl-C handler on. Each part that changes has
//! its own lock, taken for one short step and never held while a message is
//! sealed or opened, so that no thread waits on another's slow work. Only the writer's lock is
//! held while the socket is written: that is its job, one message at a time
//! on the wire.

use std::io;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::console::Printer;
use super::freshness::Freshness;
use super::peers::Peers;
use super::terminal;
use crate::shared::connection::FrameWriter;
use crate::shared::crypto::Identity;
use crate::shared::message::ClientMessage;

/// What the main thread is doing, as far as the other threads care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At the menu or one of its prompts: video from the server is not
    /// wanted, and Ctrl-C quits.
    Menu,
    /// Waiting for the video list: the reader hands video messages over.
    AwaitingMedia,
    /// A video plays: the reader hands video messages over, and Ctrl-C
    /// stops the playback instead of quitting.
    Playing,
    /// Ctrl-C was pressed during the playback: the player asks the server
    /// to stop the stream.
    StopWanted,
    /// Quit is being said: the server's close is expected, not an error.
    /// Never left: the process is about to end.
    Quitting,
}

/// What a Ctrl-C means at this moment.
enum Interrupt {
    /// A video plays: stop only the playback.
    StopPlayback,
    /// Anything else: quit, as menu option 3 would.
    Quit,
}

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
    /// What the main thread is doing.
    pub(crate) mode: SharedMode,
}

impl Session {
    /// A session at the menu.
    pub(crate) fn new(
        name: String,
        identity: Identity,
        peers: Peers,
        writer: FrameWriter<TcpStream>,
        freshness: Freshness,
        printer: Printer,
    ) -> Session {
        Session {
            name,
            identity,
            printer,
            peers: Mutex::new(peers),
            writer: Mutex::new(writer),
            freshness: Mutex::new(freshness),
            mode: SharedMode::new(),
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
        self.mode.quit();
        let _ = self.send(&ClientMessage::Quit);
        println!("bye");
    }
}

/// The [`Mode`], shared by the threads. One lock, so that a thread reads and
/// changes the mode in one step: Ctrl-C's "stop the playback if one runs,
/// else quit" must not see the main thread half-way into starting one.
pub(crate) struct SharedMode(Mutex<Mode>);

impl SharedMode {
    /// At the menu.
    fn new() -> SharedMode {
        SharedMode(Mutex::new(Mode::Menu))
    }

    /// Main thread: the video list was asked for; hand video messages over.
    pub(crate) fn await_media(&self) {
        self.switch(Mode::AwaitingMedia);
    }

    /// Main thread: a playback begins.
    pub(crate) fn start_playing(&self) {
        self.switch(Mode::Playing);
    }

    /// Main thread: back at the menu, video no longer wanted.
    pub(crate) fn back_to_menu(&self) {
        self.switch(Mode::Menu);
    }

    /// Reader thread: whether video messages go to the main thread.
    pub(crate) fn media_wanted(&self) -> bool {
        matches!(*self.lock(), Mode::AwaitingMedia | Mode::Playing | Mode::StopWanted)
    }

    /// Reader thread: whether we said Quit, so the server's close is expected.
    pub(crate) fn quitting(&self) -> bool {
        *self.lock() == Mode::Quitting
    }

    /// Main thread, during a playback: whether Ctrl-C asked to stop it.
    pub(crate) fn stop_requested(&self) -> bool {
        *self.lock() == Mode::StopWanted
    }

    /// Ctrl-C handler: what the key means now. During a playback the mode
    /// becomes [`Mode::StopWanted`]; otherwise the caller quits.
    fn interrupt(&self) -> Interrupt {
        let mut mode = self.lock();
        match *mode {
            Mode::Playing | Mode::StopWanted => {
                *mode = Mode::StopWanted;
                Interrupt::StopPlayback
            }
            Mode::Menu | Mode::AwaitingMedia | Mode::Quitting => Interrupt::Quit,
        }
    }

    /// Quit is being said (main thread, or the Ctrl-C handler).
    fn quit(&self) {
        *self.lock() = Mode::Quitting;
    }

    /// The main thread's changes of mode; once quitting, the mode stays.
    fn switch(&self, to: Mode) {
        let mut mode = self.lock();
        if *mode != Mode::Quitting {
            *mode = to;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Mode> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes Ctrl-C stop a playback, or quit everywhere else.
///
/// While the line editor or the terminal player has the terminal in raw
/// mode, Ctrl-C is a key, which they report to the main thread themselves.
/// Everywhere else (stdin piped, a video in a window or headless) it is a
/// signal, and the `ctrlc` crate runs this handler on a thread of its own:
/// the main thread may be blocked in `read` on stdin, so the handler says
/// Quit itself and ends the process.
pub(crate) fn handle_ctrl_c(session: &Arc<Session>) {
    let session = Arc::clone(session);
    let _ = ctrlc::set_handler(move || match session.mode.interrupt() {
        // The player sees the new mode within 100 ms and asks for the stop.
        Interrupt::StopPlayback => {}
        Interrupt::Quit => {
            session.quit();
            terminal::exit(0);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_c_stops_a_playback_and_quits_everywhere_else() {
        let mode = SharedMode::new();
        assert!(!mode.media_wanted());
        assert!(matches!(mode.interrupt(), Interrupt::Quit));

        mode.await_media();
        assert!(mode.media_wanted());
        assert!(matches!(mode.interrupt(), Interrupt::Quit));

        mode.start_playing();
        assert!(mode.media_wanted() && !mode.stop_requested());
        assert!(matches!(mode.interrupt(), Interrupt::StopPlayback));
        assert!(mode.stop_requested() && mode.media_wanted());
        assert!(matches!(mode.interrupt(), Interrupt::StopPlayback));

        mode.back_to_menu();
        assert!(!mode.media_wanted() && !mode.stop_requested());
        mode.start_playing();
        assert!(!mode.stop_requested(), "a new playback starts without an old stop");
    }

    #[test]
    fn quitting_is_never_left() {
        let mode = SharedMode::new();
        mode.quit();
        assert!(mode.quitting());
        mode.start_playing();
        mode.back_to_menu();
        assert!(mode.quitting() && !mode.media_wanted());
        assert!(matches!(mode.interrupt(), Interrupt::Quit));
    }
}
