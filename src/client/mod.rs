//! The interactive client.
//!
//! Three threads, each with its own job:
//! - the **main thread** owns stdin: it asks for a name, joins
//!   ([`join`]), runs the [`menu`], seals and sends messages and plays
//!   videos ([`player`], [`display`]);
//! - the **reader thread** ([`events`]) owns the socket's reading half and
//!   prints whatever the server sends the moment it arrives;
//! - the **Ctrl-C handler**'s thread (from the `ctrlc` crate) stops a
//!   playback or quits.
//!
//! They share a [`session::Session`]: the local registry of peers
//! ([`peers`]), the socket's writing half, and one mode that says what the
//! main thread is doing. Printing goes through the [`console`], and
//! [`terminal`] owns the terminal's modes, so that whichever thread ends the
//! process leaves the terminal usable.

mod console;
mod dialogue;
mod display;
mod events;
mod freshness;
mod identity;
mod inbox;
mod join;
mod keys;
mod menu;
mod peers;
mod player;
mod session;
mod terminal;
mod throttle;
mod trust;

pub use display::Display;
pub use identity::IdentitySource;

use std::sync::Arc;

use console::Console;
use freshness::Freshness;
use session::Session;

use crate::shared::crypto::now_millis;
use crate::shared::video::{Pace, PlanKind};

/// How the client was started.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST:PORT` of the server.
    pub server: String,
    /// Name to join under; asked for when `None`.
    pub name: Option<String>,
    /// Where the key comes from: per name in the configuration directory,
    /// a given file, or a fresh one each run.
    pub identity: IdentitySource,
    /// Where videos play.
    pub display: Display,
    /// How fast the server sends video.
    pub pace: Pace,
    /// Which resolution each second of a video comes in.
    pub plan: PlanKind,
    /// Read at most this many kbit/s (of 1000 bits) from the server: a slow link.
    pub max_kbps: Option<u32>,
    /// Print a line on stderr for every frame sent or received.
    pub trace: bool,
}

/// Runs the client; returns the process exit status (0 quit, 1 refused or
/// server unreachable or gone).
pub fn run(config: Config) -> i32 {
    let mut console = Console::new();
    let printer = console.printer();
    let link = join::Link { trace: config.trace, max_kbps: config.max_kbps };
    let joined = match join::join(&mut console, &config.server, config.name, &config.identity, link) {
        Ok(joined) => joined,
        Err(status) => return status,
    };
    let freshness = Freshness::load(joined.seen, now_millis());
    let session = Arc::new(Session::new(joined.name, joined.identity, joined.peers, joined.writer, freshness, printer));
    let reader = match events::start(Arc::clone(&session), joined.reader) {
        Ok(reader) => reader,
        Err(e) => {
            session.printer.error(&format!("cannot start the reader thread: {e}"));
            return 1;
        }
    };
    session::handle_ctrl_c(&session);
    let viewing = player::Viewing { display: config.display, pace: config.pace, plan: config.plan };
    menu::run(&mut console, &session, &reader.media, viewing);
    session.quit();
    // The reader thread ends when the server's goodbye arrives (or the
    // connection closes); it is given a moment for that, not forever.
    reader.wait(join::REPLY_TIMEOUT);
    terminal::restore();
    0
}
