//! The naming rules, shared by the server (which enforces them) and the
//! client (which checks before connecting, to ask again without a round trip).
//!
//! The server checks on the newcomer's handler thread; the client on its
//! main thread before connecting, and on its reader thread for every name
//! the server announces.

use thiserror::Error;

use super::limits::MAX_NAME_CHARS;

/// Why a name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// Zero characters.
    #[error("name must not be empty")]
    Empty,
    /// More than [`MAX_NAME_CHARS`] characters.
    #[error("name must be at most {max} characters, got {chars}")]
    TooLong {
        /// Characters in the name.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A control or format character (newline, ESC, zero-width, bidi override, ...).
    #[error("name must not contain control or format characters (found U+{0:04X})")]
    ForbiddenChar(u32),
    /// A default-ignorable code point (U+3164 HANGUL FILLER, a variation
    /// selector such as U+FE0F, U+034F COMBINING GRAPHEME JOINER, …): drawn
    /// as nothing, so `bob` and `bob` with one of these are two people who
    /// look the same.
    #[error("name must not contain invisible characters (found U+{0:04X})")]
    Invisible(u32),
    /// Leading or trailing white space, which would make `bob` and `bob ` two people.
    #[error("name must not start or end with white space")]
    Padded,
}

/// Checks a client name: 1 to 32 characters, no control or format
/// characters, no surrounding white space. Names are case-sensitive.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    // Count at most one past the limit: a megabyte-long name costs nothing.
    let chars = name.chars().take(MAX_NAME_CHARS + 1).count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong { chars: name.chars().count(), max: MAX_NAME_CHARS });
    }
    if let Some(c) = name.chars().find(|&c| is_control_or_format(c)) {
        return Err(NameError::ForbiddenChar(c as u32));
    }
    if let Some(c) = name.chars().find(|&c| is_default_ignorable(c)) {
        return Err(NameError::Invisible(c as u32));
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(NameError::Padded);
    }
    Ok(())
}

/// True for Unicode control characters (Cc) and format characters (Cf):
/// the ones that move the cursor, change colours, or hide and reorder text.
pub fn is_control_or_format(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
            | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
            | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// The name's confusable skeleton (Unicode TR39): two names with the same
/// skeleton look alike (`bob` and Cyrillic `bоb`, `l` and `I`), so a server
/// admits only one of them at a time.
pub fn skeleton(name: &str) -> String {
    unicode_security::confusable_detection::skeleton(name).collect()
}

/// True for Unicode's default-ignorable code points
/// (`Default_Ignorable_Code_Point` in DerivedCoreProperties.txt, Unicode 15):
/// characters a renderer shows as nothing when it does not support them.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF
        | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names_of_any_script() {
        for ok in ["alice", "Bob", "Ünïcødé", "李雷", "a", "x".repeat(32).as_str(), "two words"] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_each_broken_rule() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"x".repeat(33)), Err(NameError::TooLong { chars: 33, max: 32 }));
        assert_eq!(validate_name("bo\nb"), Err(NameError::ForbiddenChar(0x0A)));
        assert_eq!(validate_name("\u{1b}[31mred"), Err(NameError::ForbiddenChar(0x1B)));
        assert_eq!(validate_name("bob\u{202E}"), Err(NameError::ForbiddenChar(0x202E)));
        assert_eq!(validate_name("b\u{200B}ob"), Err(NameError::ForbiddenChar(0x200B)));
        assert_eq!(validate_name(" bob"), Err(NameError::Padded));
        assert_eq!(validate_name("bob\u{3164}"), Err(NameError::Invisible(0x3164)));
        assert_eq!(validate_name("bob\u{FE0F}"), Err(NameError::Invisible(0xFE0F)));
        assert_eq!(validate_name("b\u{034F}ob"), Err(NameError::Invisible(0x034F)));
        assert_eq!(skeleton("b\u{043E}b"), skeleton("bob"), "Cyrillic o");
        assert_ne!(skeleton("bob"), skeleton("rob"));
    }
}
