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
}
