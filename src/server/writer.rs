//! The writer thread: one per connection, the only code that writes to that
//! client's socket.
//!
//! Any thread may queue a message for a client (see
//! [`Outbox`](super::registry::Outbox)); this thread drains the queue into
//! the socket. A broadcast therefore never waits on a slow client's socket:
//! it only queues, and the slow client's own writer is the one that blocks.
//! (A sender of sealed messages does wait, 10 s at most, while a
//! recipient's outbox is more than half full — see
//! [`Registry::relay`](super::registry::Registry::relay) — so a flood slows
//! its sender rather than overflowing its classmates.)
//!
//! A viewer has a second, small queue for video, filled by its streaming
//! thread. Control messages go first: before each picture the writer sends
//! every waiting chat message, join and leave, so chat never queues behind
//! video (except during a hold, below, when video keeps flowing).
//!
//! Traffic the client only watches go by (others joining and leaving, copies
//! of messages sealed for someone else) is sent at most once per
//! [`BATCH_WINDOW`]: in a burst the writer holds the outbox until the window
//! ends (or the outbox is a quarter full) and then writes everything at once, so
//! a class joining costs each client a few large writes rather than one per
//! classmate.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, never, select};
use log::debug;

use super::registry::{OutboxReceiver, Outgoing};
use super::stream::VideoItem;
use crate::shared::connection::FrameWriter;
use crate::shared::frame::FrameError;
use crate::shared::limits::BATCH_WINDOW;

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
    // When deferrable traffic was last sent (see BATCH_WINDOW).
    let mut deferred_sent: Option<Instant> = None;
    let mut unflushed = false;
    loop {
        // Control first: everything waiting goes out in one flush.
        while let Some(item) = outbox.try_recv() {
            write_item(writer, outbox, item, &mut deferred_sent)?;
            unflushed = true;
        }
        if unflushed {
            writer.flush()?;
            unflushed = false;
        }
        select! {
            recv(outbox.channel()) -> item => match item {
                Ok(item) => {
                    if item.is_deferrable()
                        && let Some(wait) = deferred_sent.and_then(|sent| BATCH_WINDOW.checked_sub(sent.elapsed()))
                    {
                        // Such traffic went out less than a window ago: a burst
                        // (a class joining, a busy chat). Hold the queue until
                        // the window ends, so that queueing more wakes nobody,
                        // then send all that came meanwhile at once. Video
                        // keeps flowing.
                        video = video_only(writer, video, outbox, Instant::now() + wait)?;
                    }
                    write_item(writer, outbox, item, &mut deferred_sent)?;
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

/// Sends only video until `deadline`, or until the outbox is filling up;
/// returns the video queue, or [`never`] once no streaming thread holds it.
fn video_only(
    writer: &mut FrameWriter<&TcpStream>,
    mut video: Receiver<VideoItem>,
    outbox: &OutboxReceiver,
    deadline: Instant,
) -> Result<Receiver<VideoItem>, FrameError> {
    // Checked before each wait: a stream sent unpaced always has a frame
    // ready, and must not keep the hold going past its end.
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        select! {
            recv(video) -> item => match item {
                Ok(item) => write_video(writer, item)?,
                Err(_) => video = never(),
            },
            // A quarter full (or every sender gone): stop holding.
            recv(outbox.nudged()) -> _ => return Ok(video),
            default(left) => return Ok(video),
        }
    }
    Ok(video)
}

fn write_video(writer: &mut FrameWriter<&TcpStream>, item: VideoItem) -> Result<(), FrameError> {
    match item {
        VideoItem::Control(bytes) => {
            writer.write_encoded(&bytes)?;
            writer.flush()
        }
        VideoItem::Frame { head, jpeg } => writer.write_split(&head, &jpeg),
    }
}

fn write_item(
    writer: &mut FrameWriter<&TcpStream>,
    outbox: &OutboxReceiver,
    item: Outgoing,
    deferred_sent: &mut Option<Instant>,
) -> Result<(), FrameError> {
    item.write_to(writer)?;
    outbox.written(&item);
    if item.is_deferrable() {
        *deferred_sent = Some(Instant::now());
    }
    Ok(())
}
