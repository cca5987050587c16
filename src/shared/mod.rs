//! What client and server share: the wire protocol and the cryptography.
//!
//! The protocol has three layers, each in its own file and testable alone:
//! [`frame`] turns bytes into frames, [`message`] turns frames into typed
//! messages, and [`connection`] wraps a socket with buffered frame I/O.

pub mod connection;
pub mod crypto;
pub mod frame;
pub mod limits;
pub mod message;
pub mod names;
pub mod trace;
pub mod video;
pub mod visible;
