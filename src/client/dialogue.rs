//! What the menu's dialogues share (option 1 and 2 in `menu.rs`, option 4
//! in `trust.rs`): where a dialogue leaves the user, and the question that
//! every one of them asks. Runs on the main thread, which owns stdin.

use super::console::{Answer, Console};

/// Where a sub-dialogue leaves the user.
pub(super) enum Flow {
    /// Back at the menu.
    Menu,
    /// Input ended: the client quits.
    Quit,
}

/// Asks `prompt` for a name or a number, trimmed. `Err`: where the user
/// goes instead: back to the menu on an empty line or Ctrl-C, out on end of
/// input.
pub(super) fn ask_choice(console: &mut Console, prompt: &str) -> Result<String, Flow> {
    match console.ask(prompt) {
        Answer::Line(line) if line.trim().is_empty() => Err(Flow::Menu),
        Answer::Line(line) => Ok(line.trim().to_string()),
        Answer::Interrupted => Err(Flow::Menu),
        Answer::Eof => Err(Flow::Quit),
    }
}
