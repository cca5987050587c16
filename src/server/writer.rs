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
//!
//! It counts what it gets into the socket: the bytes of video, which the
//! adaptive plan ([`super::adaptive`]) measures a viewer's link by, and
//! every byte and frame for the server's counters ([`Traffic`]).

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, never, select};
use log::debug;

use super::hold::Hold;
use super::outbox::{OutboxReceiver, Outgoing};
use super::video_item::VideoItem;
use super::web::metrics::{Counted, Traffic};
use crate::shared::connection::FrameWriter;
use crate::shared::frame::FrameError;

/// Runs until every sender of the outbox is gone and the queue is written,
/// then closes the sending direction so the client reads a clean end of stream.
/// The client's socket as the writer writes it, every byte counted.
type Socket<'a> = FrameWriter<Counted<'a>>;

/// What the writer counts.
pub(super) struct Counts {
    /// Bytes of video this connection's writer got into the socket.
    pub(super) video: Arc<AtomicU64>,
    /// The whole server's counts.
    pub(super) traffic: Arc<Traffic>,
}

pub(super) fn run(
    stream: Arc<TcpStream>,
    outbox: OutboxReceiver,
    video: Receiver<VideoItem>,
    counts: Counts,
    trace: Option<String>,
) {
    let mut writer = FrameWriter::new(Counted { socket: &stream, traffic: &counts.traffic }).traced(trace);
    match write_all(&mut writer, &outbox, video, &counts, Hold::default()) {
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
    writer: &mut Socket<'_>,
    outbox: &OutboxReceiver,
    mut video: Receiver<VideoItem>,
    counts: &Counts,
    mut hold: Hold,
) -> Result<(), FrameError> {
    let mut unflushed = false;
    loop {
        // Everything waiting goes out, in order, with one flush. (Urgent
        // signals about what is taken here are stale: forget them first.)
        outbox.clear_urgent();
        unflushed |= write_waiting(writer, outbox, &mut hold)?;
        if unflushed {
            writer.flush()?;
            unflushed = false;
        }
        // Then sleep until there is more of either.
        select! {
            recv(outbox.channel()) -> item => match item {
                Ok(item) => {
                    video = hold.wait_if_burst(&item, outbox, video, |frame| write_video(writer, frame, counts))?;
                    write_item(writer, outbox, &mut hold, item)?;
                    unflushed = true;
                }
                // Every sender is gone: the client has left.
                Err(_) => return writer.flush(),
            },
            recv(video) -> item => match item {
                // Whatever control came meanwhile still goes before the picture.
                Ok(item) => {
                    write_waiting(writer, outbox, &mut hold)?;
                    write_video(writer, item, counts)?;
                }
                // No streaming thread holds the queue any more.
                Err(_) => video = never(),
            },
        }
    }
}

/// Writes everything waiting in the outbox, in order, without flushing;
/// whether there was anything.
fn write_waiting(writer: &mut Socket<'_>, outbox: &OutboxReceiver, hold: &mut Hold) -> Result<bool, FrameError> {
    let mut wrote = false;
    while let Some(item) = outbox.try_recv() {
        write_item(writer, outbox, hold, item)?;
        wrote = true;
    }
    Ok(wrote)
}

/// Writes one outbox item, without flushing (the loop flushes once it has
/// written everything waiting).
fn write_item(
    writer: &mut Socket<'_>,
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
/// Counts its bytes once they are in the socket.
fn write_video(writer: &mut Socket<'_>, item: VideoItem, counts: &Counts) -> Result<(), FrameError> {
    let bytes = item.wire_len() as u64;
    match item {
        VideoItem::Control(bytes) => {
            writer.write_encoded(&bytes)?;
            writer.flush()?;
        }
        VideoItem::Frame { head, jpeg, .. } => {
            writer.write_split(&head, &jpeg)?;
            Traffic::add(&counts.traffic.frames_out, 1);
        }
    }
    counts.video.fetch_add(bytes, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::server::outbox::Outbox;
    use crate::server::store::Slice;
    use crate::server::video_item::FrameHead;
    use crate::shared::connection::FrameReader;
    use crate::shared::frame::{Frame, FrameKind};
    use crate::shared::limits::MAX_FRAME_LEN;
    use crate::shared::message::{ServerMessage, encode};

    /// A hold far longer than any test: only its end by an urgent item, or
    /// the end of the test, can release it. A writer that ignored the
    /// signal would keep the client waiting past the read timeout.
    const ENDLESS: Duration = Duration::from_secs(120);

    struct Harness {
        outbox: Outbox,
        video: crossbeam_channel::Sender<VideoItem>,
        client: FrameReader<TcpStream>,
        writer: thread::JoinHandle<Result<(), FrameError>>,
    }

    fn start() -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (server, _) = listener.accept().unwrap();
        let server = Arc::new(server);
        let (outbox, receiver) = Outbox::new(1, Arc::clone(&server));
        let (video, video_rx) = crossbeam_channel::bounded(4);
        let writer = thread::spawn(move || {
            let traffic = Traffic::default();
            let mut writer = FrameWriter::new(Counted { socket: &server, traffic: &traffic });
            let counts = Counts { video: Arc::default(), traffic: Arc::default() };
            write_all(&mut writer, &receiver, video_rx, &counts, Hold::new(ENDLESS))
        });
        Harness { outbox, video, client: FrameReader::new(client, MAX_FRAME_LEN), writer }
    }

    fn note(text: &str) -> Arc<[u8]> {
        encode(&ServerMessage::Error { message: text.into() }).unwrap().into()
    }

    impl Harness {
        /// The next frame the client reads: a note's text, or `video`.
        fn next(&mut self) -> String {
            match self.client.next_frame().expect("the writer sent nothing in time") {
                Frame { kind: FrameKind::Video, .. } => "video".into(),
                frame => match crate::shared::message::decode::<ServerMessage>(frame).unwrap() {
                    ServerMessage::Error { message } => message,
                    other => format!("{other:?}"),
                },
            }
        }

        /// A bystander's copy goes out at once, and starts a window in which
        /// the next is held.
        fn start_a_hold(&mut self) {
            self.outbox.push(Outgoing::deferrable(&note("first bystander copy"))).unwrap();
            assert_eq!(self.next(), "first bystander copy");
            self.outbox.push(Outgoing::deferrable(&note("held bystander copy"))).unwrap();
        }

        fn stop(self) {
            drop(self.outbox);
            drop(self.video);
            self.writer.join().unwrap().unwrap();
        }
    }

    #[test]
    fn a_message_for_the_client_ends_a_hold_and_goes_out_in_order() {
        let mut harness = start();
        harness.start_a_hold();
        harness.outbox.push(Outgoing::now(&note("addressed to the client"))).unwrap();
        assert_eq!(harness.next(), "held bystander copy", "what was queued first still goes first");
        assert_eq!(harness.next(), "addressed to the client");
        harness.stop();
    }

    #[test]
    fn video_flows_during_a_hold() {
        let mut harness = start();
        harness.start_a_hold();
        let jpeg = Slice::from(Arc::<[u8]>::from(&[][..]));
        let mut head = FrameHead::new();
        head.extend([0, 0, 0, 1, FrameKind::Video as u8]);
        let frame = VideoItem::Frame { sequence: 0, head, jpeg };
        harness.video.send(frame).unwrap();
        assert_eq!(harness.next(), "video", "the picture is not held with the bystander copy");
        harness.outbox.push(Outgoing::now(&note("addressed to the client"))).unwrap();
        assert_eq!(harness.next(), "held bystander copy");
        assert_eq!(harness.next(), "addressed to the client");
        harness.stop();
    }
}
