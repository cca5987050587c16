//! The writer thread: one per connection, the only code that writes to that
//! client's socket.
//!
//! Any thread may queue a message for a client (see
//! [`Outbox`](super::registry::Outbox)); this thread drains the queue into
//! the socket. A broadcast therefore never waits for a slow client: it only
//! queues, and the slow client's own writer is the one that blocks.
//!
//! A viewer has a second, small queue for video, filled by its streaming
//! thread. Control messages always go first: before each picture the writer
//! sends every waiting chat message, join and leave, so chat never queues
//! behind video.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use crossbeam_channel::{Receiver, never, select};
use log::debug;

use super::registry::OutboxReceiver;
use super::stream::VideoItem;
use crate::shared::connection::FrameWriter;
use crate::shared::frame::FrameError;

/// Runs until every sender of the outbox is gone and the queue is written,
/// then closes the sending direction so the client reads a clean end of stream.
pub(super) fn run(stream: Arc<TcpStream>, outbox: OutboxReceiver, video: Receiver<VideoItem>, trace: Option<String>) {
    let mut writer = FrameWriter::new(&*stream).traced(trace);
    match write_all(&mut writer, &outbox, video) {
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

fn write_all(
    writer: &mut FrameWriter<&TcpStream>,
    outbox: &OutboxReceiver,
    video: Receiver<VideoItem>,
) -> Result<(), FrameError> {
    let mut video = video;
    loop {
        // Control first: everything waiting goes out in one flush.
        let mut wrote = false;
        while let Some(item) = outbox.try_recv() {
            writer.write_encoded(&item.encode()?)?;
            outbox.written(&item);
            wrote = true;
        }
        if wrote {
            writer.flush()?;
        }
        select! {
            recv(outbox.channel()) -> item => match item {
                Ok(item) => {
                    writer.write_encoded(&item.encode()?)?;
                    outbox.written(&item);
                    writer.flush()?;
                }
                // Every sender is gone: the client has left.
                Err(_) => return writer.flush(),
            },
            recv(video) -> item => match item {
                Ok(VideoItem::Control(bytes)) => {
                    writer.write_encoded(&bytes)?;
                    writer.flush()?;
                }
                Ok(VideoItem::Frame { head, jpeg }) => writer.write_split(&head, &jpeg)?,
                // No streaming thread holds the queue any more.
                Err(_) => video = never(),
            },
        }
    }
}
