//! The writer thread: one per connection, the only code that writes to that
//! client's socket.
//!
//! Any thread may queue a message for a client (see
//! [`Outbox`](super::registry::Outbox)); this thread drains the queue into
//! the socket. A broadcast therefore never waits for a slow client: it only
//! queues, and the slow client's own writer is the one that blocks. Frames
//! waiting together go out in one flush.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use log::debug;

use super::registry::{OutboxReceiver, Outgoing};
use crate::shared::connection::FrameWriter;
use crate::shared::frame::FrameError;

/// Runs until every sender of the outbox is gone and the queue is written,
/// then closes the sending direction so the client reads a clean end of stream.
pub(super) fn run(stream: Arc<TcpStream>, outbox: OutboxReceiver) {
    let mut writer = FrameWriter::new(&*stream);
    let result = (|| -> Result<(), FrameError> {
        while let Some(item) = outbox.recv() {
            write(&mut writer, &outbox, &item)?;
            while let Some(next) = outbox.try_recv() {
                write(&mut writer, &outbox, &next)?;
            }
            writer.flush()?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            let _ = stream.shutdown(Shutdown::Write);
        }
        Err(e) => {
            // The client stopped reading or vanished: wake its handler thread
            // (blocked in read) so that it cleans up.
            debug!("writer for {:?}: {e}", stream.peer_addr());
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn write(
    writer: &mut FrameWriter<&TcpStream>,
    outbox: &OutboxReceiver,
    item: &Outgoing,
) -> Result<(), FrameError> {
    let bytes = item.encode()?;
    writer.write_encoded(&bytes)?;
    outbox.written(item);
    Ok(())
}
