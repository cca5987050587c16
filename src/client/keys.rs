//! What the viewer's keys mean during a playback, in each player: a key in
//! the window, a key in the terminal, or a line on stdin (`--display none`
//! with input from a pipe). Every player turns its input into a [`Wish`];
//! the player loop (`super::player`) turns wishes into messages to the
//! server.
//!
//! | key | window and terminal | stdin line |
//! |---|---|---|
//! | pause / resume | space (or `p`) | `p` |
//! | 5 s back | ← (or `<`) | `<` |
//! | 5 s forward | → (or `>`) | `>` |
//! | stop | `q`, Esc (Ctrl-C in the terminal) | `q` |

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What the viewer wants, after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wish {
    Continue,
    Stop,
    /// Pause if playing, resume if paused.
    TogglePause,
    /// Seek [`SEEK_STEP_SECONDS`] back.
    Back,
    /// Seek [`SEEK_STEP_SECONDS`] forward.
    Forward,
}

/// How far ← and → seek.
pub(crate) const SEEK_STEP_SECONDS: f64 = 5.0;

/// A key from OpenCV's `wait_key_ex` in the window (-1: none). Arrow keys
/// have a different code under each window system: GTK and X11, Qt, Windows.
pub(crate) fn window_key(code: i32) -> Wish {
    const LEFT: [i32; 3] = [0xFF51, 0x0100_0012, 0x0025_0000];
    const RIGHT: [i32; 3] = [0xFF53, 0x0100_0014, 0x0027_0000];
    match code {
        _ if LEFT.contains(&code) => Wish::Back,
        _ if RIGHT.contains(&code) => Wish::Forward,
        27 => Wish::Stop,
        _ => match u8::try_from(code & 0xFF).map(char::from) {
            Ok(key) if code < 0x100 => character(key),
            _ => Wish::Continue,
        },
    }
}

/// A key in the terminal (raw mode for the terminal player; with
/// `--display none` on a terminal, the same keys arrive when Enter is pressed).
pub(crate) fn terminal_key(key: KeyEvent) -> Wish {
    if key.kind != KeyEventKind::Press {
        return Wish::Continue;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Wish::Stop,
        KeyCode::Esc => Wish::Stop,
        KeyCode::Left => Wish::Back,
        KeyCode::Right => Wish::Forward,
        KeyCode::Char(key) => character(key),
        _ => Wish::Continue,
    }
}

/// A line from piped stdin during a playback; `None` if it is not one of
/// the playback's commands (it waits for the menu).
pub(crate) fn stdin_line(line: &str) -> Option<Wish> {
    match line.trim() {
        "p" => Some(Wish::TogglePause),
        "<" => Some(Wish::Back),
        ">" => Some(Wish::Forward),
        "q" => Some(Wish::Stop),
        _ => None,
    }
}

fn character(key: char) -> Wish {
    match key {
        ' ' | 'p' | 'P' => Wish::TogglePause,
        '<' | ',' => Wish::Back,
        '>' | '.' => Wish::Forward,
        'q' | 'Q' => Wish::Stop,
        _ => Wish::Continue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_player_maps_its_keys_to_the_same_wishes() {
        assert_eq!(window_key(i32::from(b' ')), Wish::TogglePause);
        assert_eq!(window_key(0xFF51), Wish::Back, "GTK's left arrow");
        assert_eq!(window_key(0x0100_0014), Wish::Forward, "Qt's right arrow");
        assert_eq!(window_key(i32::from(b'q')), Wish::Stop);
        assert_eq!(window_key(-1), Wish::Continue);
        assert_eq!(window_key(0x0100_0000 + i32::from(b'q')), Wish::Continue, "not q: another key's low byte");
        let press = |code| KeyEvent::new(code, KeyModifiers::NONE);
        assert_eq!(terminal_key(press(KeyCode::Char(' '))), Wish::TogglePause);
        assert_eq!(terminal_key(press(KeyCode::Left)), Wish::Back);
        assert_eq!(terminal_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Wish::Stop);
        assert_eq!(stdin_line("p"), Some(Wish::TogglePause));
        assert_eq!(stdin_line(" > "), Some(Wish::Forward));
        assert_eq!(stdin_line("3"), None, "a menu answer waits for the menu");
    }
}
