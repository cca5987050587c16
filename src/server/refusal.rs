//! Why a join is refused, in words for the person and as a code for
//! programs (`refused`'s `reason` and `code`). Built by the handler thread
//! and the registry; sent before the connection is closed.

use thiserror::Error;

use crate::shared::crypto::CryptoError;
use crate::shared::limits::PROTOCOL_VERSION;
use crate::shared::message::RefusalCode;
use crate::shared::names::NameError;

/// Why a join was refused. The server sends the reason and closes.
#[derive(Debug, Error)]
pub enum Refusal {
    /// Someone connected has the name.
    #[error("name \"{0}\" is taken")]
    NameTaken(String),
    /// The name breaks the rules.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    /// The name looks like the name of someone connected.
    #[error("name \"{name}\" looks like \"{online}\", who is connected: choose one that looks different")]
    Confusable { name: String, online: String },
    /// The key is unacceptable.
    #[error("bad key: {0}")]
    BadKey(#[from] CryptoError),
    /// `--max-clients` are connected.
    #[error("server is full ({0} clients)")]
    ServerFull(usize),
    /// `--max-per-address` clients are connected from this address.
    #[error("{0} clients are already connected from your address (the server's --max-per-address)")]
    AddressLimit(usize),
    /// Another protocol version.
    #[error("protocol version {0} is not supported (this server speaks {PROTOCOL_VERSION})")]
    Version(u32),
    /// No hello, a malformed hello, or none in time.
    #[error("{0}")]
    Protocol(String),
    /// The server is going away.
    #[error("server is shutting down")]
    ShuttingDown,
}

impl Refusal {
    /// The machine-readable code sent with the reason.
    pub fn code(&self) -> RefusalCode {
        match self {
            Refusal::NameTaken(_) => RefusalCode::NameTaken,
            Refusal::InvalidName(_) => RefusalCode::InvalidName,
            Refusal::Confusable { .. } => RefusalCode::ConfusableName,
            Refusal::BadKey(_) => RefusalCode::BadKey,
            Refusal::ServerFull(_) => RefusalCode::ServerFull,
            Refusal::AddressLimit(_) => RefusalCode::AddressLimit,
            Refusal::Version(_) => RefusalCode::Version,
            Refusal::Protocol(_) => RefusalCode::Protocol,
            Refusal::ShuttingDown => RefusalCode::ShuttingDown,
        }
    }
}
