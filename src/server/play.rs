//! Starting a playback, for a viewer's handler thread: the streaming thread
//! ([`stream::run`]), with the flags that stop it and the channel that
//! steers it, held as a [`Playback`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use super::control::{Flags, MAX_WAITING_COMMANDS, Playback};
use super::stream::{self, Job, Queue};

/// Starts `job`'s streaming thread, writing into the viewer's `queue`.
pub(crate) fn start(job: Job, queue: Queue, peer: SocketAddr) -> io::Result<Playback> {
    let id = job.id;
    let flags = Arc::new(Flags::default());
    let shared = Arc::clone(&flags);
    let (commands, received) = crossbeam_channel::bounded(MAX_WAITING_COMMANDS);
    let thread = thread::Builder::new()
        .name(format!("stream-{peer}-{id}"))
        .spawn(move || stream::run(job, queue, received, shared))?;
    Ok(Playback { id, flags, commands, thread })
}
