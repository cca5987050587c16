//! ciphercast: a key registry, end-to-end encrypted chat relayed by a
//! server, and multi-resolution video streaming, on blocking `std::net`
//! sockets — written to be read beside a computer-networks lecture.
//!
//! # Layout
//! - [`shared`]: what both sides speak. [`shared::frame`] (bytes ↔ frames),
//!   [`shared::message`] (frames ↔ typed messages), [`shared::connection`]
//!   (frame I/O on a socket), [`shared::crypto`] (hybrid RSA + AES-GCM
//!   encryption, signatures, fingerprints), [`shared::limits`] (every limit).
//! - [`server`]: the accept loop, one handler and one writer thread per
//!   client, the Mutex-protected registry they share, and a streaming
//!   thread per playback.
//! - [`client`]: the interactive client: a reader thread for the network,
//!   the main thread for the menu.
//! - [`videos`]: the files of the video library: the demo clips, and the
//!   resolution ladder made from a file you bring (`videos --from`).
//! - [`cli`]: the command line, shared by `main.rs` and the tests.
//!
//! `ciphercast bench` is not part of the library: it lives beside the
//! binary (`src/bench/`) and drives the server through this library's
//! public interface and the protocol, as any other client would.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod server;
pub mod shared;
pub mod videos;
