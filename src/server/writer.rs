//! The writer thread: one per connection, the only code that writes to that
//! client's socket.
//!
//! Any thread may queue a message for a client (see
//! [`Outbox`](super::outbox::Outbox)); this thread drains the queue into the
//! socket. A broadcast therefore never waits on a slow client's socket: it
//! only queues, and the slow client's own writer is the one that blocks.
//!
//! A viewer has a second, small queue for video, filled by its streaming
//! thread. Control messages go first: before each picture the writer sends
//! every waiting chat message, join and leave, so chat never queues behind
//! video. Traffic the client only watches go by may be held back for a
//! moment in a burst ([`Hold`]), and then goes out together.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use crossbeam_channel::{Receiver, never, select};
use log::debug;

use super::hold::Hold;
use super::outbox::{OutboxReceiver, Outgoing};
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
    mut video: Receiver<VideoItem>,
) -> Result<(), FrameError> {
    let mut hold = Hold::default();
    let mut unflushed = false;
    loop {
        // Everything waiting goes out, in order, with one flush. (Urgent
        // signals about what is taken here are stale: forget them first.)
        outbox.clear_urgent();
        while let Some(item) = outbox.try_recv() {
            write_item(writer, outbox, &mut hold, item)?;
            unflushed = true;
        }
        if unflushed {
            writer.flush()?;
            unflushed = false;
        }
        // Then sleep until there is more of either.
        select! {
            recv(outbox.channel()) -> item => match item {
                Ok(item) => {
                    video = hold.wait_if_burst(&item, outbox, video, |frame| write_video(writer, frame))?;
                    write_item(writer, outbox, &mut hold, item)?;
                    unflushed = true;
                }
                // Every sender is gone: the client has left.
                Err(_) => return writer.flush(),
            },
            recv(video) -> item => match item {
                Ok(item) => write_video(writer, item)?,
                // No streaming thread holds the queue any more.
                Err(_) => video = never(),
            },
        }
    }
}

/// Writes one outbox item, without flushing (the loop flushes once it has
/// written everything waiting).
fn write_item(
    writer: &mut FrameWriter<&TcpStream>,
    outbox: &OutboxReceiver,
    hold: &mut Hold,
    item: Outgoing,
) -> Result<(), FrameError> {
    item.write_to(writer)?;
    outbox.written(&item);
    hold.written(&item);
    Ok(())
}

/// Writes one video item and flushes: a picture goes out whole and at once.
fn write_video(writer: &mut FrameWriter<&TcpStream>, item: VideoItem) -> Result<(), FrameError> {
    match item {
        VideoItem::Control(bytes) => {
            writer.write_encoded(&bytes)?;
            writer.flush()
        }
        VideoItem::Frame { head, jpeg } => writer.write_split(&head, &jpeg),
    }
}
