//! Making text from the network safe to print.
//!
//! Called by every thread that prints something it did not write itself.
//!
//! A name, a message or an error string may carry ESC sequences that would
//! clear a classmate's screen, retitle the window or fake a line of output.
//! Everything that came over the network goes through [`visible`] before it
//! reaches a terminal: control and format characters are shown as escapes
//! (`\x1b`, `\u{202e}`), never interpreted.

use std::borrow::Cow;
use std::fmt::Write;

use super::names::is_control_or_format;

/// The most bytes of a server's own text (an error, a refusal reason, a
/// video's name or label) printed; a peer's message is printed whole.
pub const SERVER_TEXT_MAX: usize = 4096;

/// [`visible`], cut after [`SERVER_TEXT_MAX`] bytes with `… (N more bytes)`:
/// for text from the server that is not a peer's message, so that a 15 MiB
/// error string is not one 15 MiB line.
pub fn visible_capped(text: &str) -> Cow<'_, str> {
    if text.len() <= SERVER_TEXT_MAX {
        return visible(text);
    }
    let mut cut = SERVER_TEXT_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}… ({} more bytes)", visible(&text[..cut]), text.len() - cut))
}

/// Returns `text` with every control and format character replaced by a
/// visible escape. Borrowed when there was nothing to replace.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control_or_format) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 && is_control_or_format(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_control_or_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_plain_text_alone() {
        assert!(matches!(visible("héllo, wörld ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn shows_escape_sequences_instead_of_running_them() {
        assert_eq!(visible("\u{1b}[2J\u{1b}]0;pwned\u{7}"), "\\x1b[2J\\x1b]0;pwned\\x07");
        assert_eq!(visible("a\r\nb\u{9b}c"), "a\\r\\nb\\x9bc");
        assert_eq!(visible("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert!(!visible("\u{1b}\u{7f}\u{0}").chars().any(|c| c.is_control()));
    }

    #[test]
    fn server_text_is_cut_at_4_kib_on_a_character_boundary() {
        assert_eq!(visible_capped("short"), "short");
        let long = format!("{}é{}", "a".repeat(SERVER_TEXT_MAX - 1), "b".repeat(10_000));
        let shown = visible_capped(&long);
        assert!(shown.starts_with(&"a".repeat(SERVER_TEXT_MAX - 1)));
        assert!(shown.ends_with("… (10002 more bytes)"), "{}", &shown[shown.len() - 30..]);
    }
}
