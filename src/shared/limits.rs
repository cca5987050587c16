//! Every limit the protocol enforces, in one place.
//!
//! Constants only: read by every thread, changed by none.
//!
//! A server that teaches blocking sockets must also show how to survive a
//! classmate's garbage: each number below is checked *before* the work or the
//! allocation it guards, and each violation fails with a typed error that
//! carries the numbers (see [`crate::shared::frame::FrameError`] and
//! `server::registry::Refusal`).

use std::time::Duration;

/// Protocol version carried in the hello; a server refuses any other.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default TCP port of the server (`--port`).
pub const DEFAULT_PORT: u16 = 8005;

/// Largest frame payload (kind byte included) accepted or sent: 16 MiB.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Largest frame a connection may send before it has joined: a hello with an
/// 8192-bit key is under 2 KiB, so 64 KiB leaves room without letting a
/// stranger make the server buffer megabytes.
pub const MAX_HELLO_FRAME_LEN: u32 = 64 * 1024;

/// A connection that has not joined this long after connecting is closed.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// Client names: 1 to 32 characters (not bytes).
pub const MAX_NAME_CHARS: usize = 32;

/// Smallest accepted RSA modulus, in bits.
pub const MIN_KEY_BITS: usize = 2048;

/// Largest accepted RSA modulus, in bits.
pub const MAX_KEY_BITS: usize = 8192;

/// Size of the keys the client generates.
pub const CLIENT_KEY_BITS: usize = 2048;

/// Largest plaintext a client will seal: 1 MiB of UTF-8.
pub const MAX_PLAINTEXT_BYTES: usize = 1024 * 1024;

/// Largest sealed payload (AEAD ciphertext, tag included) the server relays.
pub const MAX_CIPHERTEXT_BYTES: usize = MAX_PLAINTEXT_BYTES + 16;

/// A sealed message whose timestamp is further than this from the
/// recipient's clock is refused (replays of old messages; wild clocks).
pub const MESSAGE_MAX_SKEW: Duration = Duration::from_secs(10 * 60);

/// Message ids a client remembers to refuse replays (oldest forgotten first).
pub const REPLAY_MEMORY: usize = 100_000;

/// Default `--max-clients`.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;

/// Largest `--max-clients`: a newcomer's welcome lists every client with its
/// key, and 8 000 entries with 8192-bit keys (about 1.6 KB each) still fit
/// in one 16 MiB frame.
pub const MAX_MAX_CLIENTS: usize = 8_000;

/// Frames a streaming thread encodes ahead of their time (about a quarter
/// of a second at 30 fps), so that a moment's competition for the CPU costs
/// slack rather than lateness.
pub const LOOKAHEAD_FRAMES: usize = 8;

/// Bytes a client reads from its socket per system call: a burst of joins
/// arrives as a few large writes, read with a few calls.
pub const CLIENT_READ_BUFFER: usize = 64 * 1024;

/// Traffic a client only watches go by — others joining and leaving, and
/// copies of messages sealed for someone else — is sent at most once per
/// window: a writer that sent some less than this long ago holds the next
/// until the window ends, then sends all that came meanwhile together (and
/// whatever queued behind it). When a class joins at once, each client gets a
/// few large writes instead of one per classmate, and a busy chat wakes each
/// bystander once per window, not once per message. Nothing is held when it
/// is not a burst, and anything for the client itself (a message addressed
/// to it, a reply) ends a hold at once (see `server/hold.rs`).
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// Connections that may be waiting to join on top of `--max-clients`; beyond
/// that the acceptor waits up to [`DOOR_WAIT`] for one of them to finish
/// (the others queue in the listen backlog), then turns the newcomer away
/// without a thread.
pub const MAX_PENDING_JOINS: usize = 64;

/// How long the acceptor waits for a place among [`MAX_PENDING_JOINS`], and
/// the longest a connection queues for a place among its address's
/// [`MAX_PENDING_PER_ADDRESS`] before it is turned away with `busy`.
pub const DOOR_WAIT: Duration = Duration::from_secs(2);

/// Connections from one address that may be waiting to join at once; the
/// next ones from there queue (see `server/door.rs`), so a host holding the
/// door with silent connections never delays another address.
pub const MAX_PENDING_PER_ADDRESS: usize = 8;

/// Connections that may queue at one address's door (a class behind NAT,
/// or the bench's thousand); more are turned away with `busy` at once.
pub const MAX_QUEUED_PER_ADDRESS: usize = 1024;

/// Connections that may queue at every address's door together.
pub const MAX_QUEUED_JOINS: usize = 4096;

/// Control messages that may wait in one client's outbox. A client that lets
/// this many pile up is not reading, and is disconnected.
pub const OUTBOX_MESSAGES: usize = 1024;

/// Bytes of control messages that may wait in one client's outbox (the count
/// alone would let 1024 one-megabyte messages pile up).
pub const OUTBOX_BYTES: usize = 32 * 1024 * 1024;

/// How long a recipient's outbox may stay congested (more than half full,
/// until its writer brings it back to a quarter) while a sender of a sealed
/// message waits on it (see `Registry::relay`). A moment's pause of a
/// classmate's client fits in it; a recipient still congested after it cannot
/// keep up with what the class sends, and is disconnected. A sender waits at
/// most twice this in all.
pub const RELAY_WAIT: Duration = Duration::from_secs(5);

/// Video frames that may wait between a viewer's streaming thread and its
/// writer: enough to smooth jitter, few enough that a slow viewer makes its
/// own streaming thread wait instead of filling the server's memory.
pub const VIDEO_QUEUE_FRAMES: usize = 4;

/// Default budget of the server's shared frame cache, in MiB (`--cache-mb`).
pub const DEFAULT_CACHE_MB: usize = 256;

/// Default JPEG quality of streamed frames (`--jpeg-quality`).
pub const DEFAULT_JPEG_QUALITY: u8 = 80;

/// A write that makes no progress for this long means the peer stopped
/// reading; the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a shutting-down server lets its writers send what is queued
/// (every client's `server_closing` last) before it closes what is still
/// open: a client that reads a byte now and then cannot keep it running.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Stack size of the per-connection threads; they keep little on the stack,
/// and a classroom server may run a thousand of them.
pub const CONNECTION_STACK_BYTES: usize = 256 * 1024;
