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
    }
}
