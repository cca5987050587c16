//! The terminal's modes, and leaving the terminal usable on every way out.
//!
//! Two parts of the client change how the terminal behaves, both on the main
//! thread:
//! - the line editor (rustyline, in [`super::console`]) switches the terminal
//!   to raw mode while a prompt waits, and back when the line is read;
//! - the terminal video player (in [`super::display`]) switches it to raw
//!   mode for a whole playback, so that keys arrive one at a time, and
//!   confines scrolling to the bottom rows, so that events printed during the
//!   playback scroll there and never over the picture.
//!
//! Either may be in force when another thread ends the process: the reader
//! thread when the server vanishes, the Ctrl-C handler's thread when the user
//! quits. The main thread's own clean-up never runs then, so [`exit`] undoes
//! both from whatever thread calls it. This file imports nothing else of the
//! client, so that everything that prints can use it.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// The settings the terminal had at start, put back by [`restore`].
#[cfg(unix)]
static SAVED: std::sync::Mutex<Option<nix::sys::termios::Termios>> = std::sync::Mutex::new(None);

/// Set while the terminal player has the terminal (raw mode and a narrowed
/// scrolling region). An atomic, not a lock: it is read for every event line
/// printed, and written from whichever thread gets there first on exit.
static PLAYER_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Remembers the terminal's settings (before the line editor changes them).
pub(crate) fn save() {
    #[cfg(unix)]
    if let Ok(settings) = nix::sys::termios::tcgetattr(io::stdin()) {
        *SAVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(settings);
    }
}

/// Puts the terminal back as [`save`] found it.
pub(crate) fn restore() {
    #[cfg(unix)]
    if let Some(settings) = SAVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
        let _ = nix::sys::termios::tcsetattr(io::stdin(), nix::sys::termios::SetArg::TCSANOW, settings);
    }
}

/// Whether the terminal player has the terminal: in raw mode a line must
/// end in CR LF, since the terminal no longer adds the carriage return.
pub(crate) fn player_active() -> bool {
    PLAYER_ACTIVE.load(Ordering::SeqCst)
}

/// Hands the terminal to the player: raw mode, a cleared screen, and
/// scrolling confined to the last `event_rows` of its `rows`, with the
/// cursor there.
pub(crate) fn enter_player(rows: u16, event_rows: u16) {
    // Marked first: an event printed from now on ends in CR LF, which a
    // terminal not yet raw shows just as well.
    PLAYER_ACTIVE.store(true, Ordering::SeqCst);
    let _ = crossterm::terminal::enable_raw_mode();
    write_now(&format!("\x1b[2J\x1b[{};{rows}r\x1b[{rows};1H", rows - event_rows + 1));
}

/// Gives the terminal back from the player: the whole screen scrolls again,
/// and output goes on below everything on its `rows`.
pub(crate) fn leave_player(rows: u16) {
    write_now(&format!("\x1b[r\x1b[{rows};1H\r\n"));
    let _ = crossterm::terminal::disable_raw_mode();
    PLAYER_ACTIVE.store(false, Ordering::SeqCst);
}

/// Undoes the player's changes if it has the terminal; from any thread.
fn reset_player() {
    // `swap`: if two threads get here at once, only one resets.
    if PLAYER_ACTIVE.swap(false, Ordering::SeqCst) {
        write_now("\x1b[r\r\n");
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Writes control sequences in one piece: the stdout lock keeps another
/// thread's event line from landing in the middle of one.
fn write_now(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Ends the process from any thread, leaving the terminal usable.
pub(crate) fn exit(code: i32) -> ! {
    reset_player();
    restore();
    let _ = io::stdout().flush();
    std::process::exit(code)
}
