//! The per-client handler: one thread per connection (`client-<addr>`),
//! blocked in `read`. It starts the connection's writer thread, and a
//! streaming thread for each playback.
//!
//! Its life has two phases. Until the client has joined, every read is held
//! to the join deadline, 10 s from connecting (so a client trickling its
//! hello a byte at a time is cut off all the same), and frames are capped at
//! [`MAX_HELLO_FRAME_LEN`]. After the join, the thread reads one frame at a
//! time with no timeout, decodes it, and hands it to one `handle_*` method
//! per message. Whatever ends the loop (quit, disconnect, garbage, a panic),
//! the same cleanup runs: stop and join the streaming thread, leave the
//! registry (and the web page, with `--web`), let the writer drain, join it.
//!
//! This thread never writes to the socket: replies go through the client's
//! outbox like everything else, so they stay in order with broadcasts.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use log::{debug, error, info, warn};

use super::adaptive;
use super::context::Context;
use super::control::{Command, MAX_WAITING_COMMANDS, Playback};
use super::door::PendingJoin;
use super::join_clock::JoinClock;
use super::library;
use super::live::LiveEntry;
use super::outbox::Outbox;
use super::per_address::Place;
use super::play;
use super::refusal::Refusal;
use super::registry::RelayError;
use super::stream::{Job, Queue};
use super::web::CIPHERTEXT_HEAD;
use super::web::metrics::Traffic;
use super::writer;
use crate::shared::connection::{FrameReader, RecvError};
use crate::shared::crypto::PeerKey;
use crate::shared::frame::FrameError;
use crate::shared::limits::{
    CONNECTION_STACK_BYTES, JOIN_DEADLINE, MAX_FRAME_LEN, MAX_HELLO_FRAME_LEN, PROTOCOL_VERSION, VIDEO_QUEUE_FRAMES,
    WRITE_TIMEOUT,
};
use crate::shared::message::{ClientMessage, Envelope, LeaveReason, ServerMessage, VideoInfo};
use crate::shared::names::validate_name;
use crate::shared::video::{EndReason, Pace, PlanKind};
use crate::shared::visible::visible;

/// Serves one connection until it ends. Runs on the connection's own thread.
///
/// `live` is dropped last, when everything below is done: that is when
/// shutdown stops waiting for this connection and its socket closes.
pub(super) fn serve(
    stream: TcpStream,
    accepted: Instant,
    context: Arc<Context>,
    pending: PendingJoin,
    live: LiveEntry,
) {
    let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // Small frames (chat) must not wait for Nagle's algorithm; a peer that
    // stops reading must not hold its writer forever.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let stream = Arc::new(stream);
    let (outbox, receiver) = Outbox::new(live.id(), Arc::clone(&stream));
    let (video, video_receiver) = crossbeam_channel::bounded(VIDEO_QUEUE_FRAMES);
    let writer_video = video_receiver.clone();
    let written = Arc::new(AtomicU64::new(0));
    let counts = writer::Counts { video: Arc::clone(&written), traffic: Arc::clone(&context.traffic) };

    let writer_stream = Arc::clone(&stream);
    let trace_label = context.config.trace.then(|| peer.to_string());
    let writer = match thread::Builder::new()
        .name(format!("writer-{peer}"))
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(move || writer::run(writer_stream, receiver, writer_video, counts, trace_label))
    {
        Ok(handle) => handle,
        Err(e) => {
            warn!("{peer}: cannot start a writer thread: {e}");
            return;
        }
    };

    let traffic = Arc::clone(&context.traffic);
    let reader = FrameReader::new(
        JoinClock { stream: Arc::clone(&stream), deadline: Some(accepted + JOIN_DEADLINE), traffic },
        MAX_HELLO_FRAME_LEN,
    )
    .traced(context.config.trace.then(|| peer.to_string()));
    let mut handler = Handler {
        context,
        outbox,
        video: Queue { sender: video, unsent: video_receiver, written },
        playing: None,
        last_stream: 0,
        reader,
        peer,
        name: None,
        pending: Some(pending),
        place: None,
    };
    // A bug that panics while serving one client must not leave a ghost in
    // the registry: catch it here and clean up as for any disconnect. (The
    // registry lock is never held by this thread's code across a panic
    // point, and it recovers from poisoning anyway.)
    let reason = match panic::catch_unwind(AssertUnwindSafe(|| handler.run())) {
        Ok(reason) => reason,
        Err(_) => {
            error!("{}: the handler panicked; closing this connection only", handler.describe());
            let _ = stream.shutdown(Shutdown::Both);
            LeaveReason::Disconnected
        }
    };
    // A viewer that leaves mid-stream: its streaming thread is stopped and
    // joined first, so no thread outlives its connection.
    handler.stop_stream();
    if let Some(name) = &handler.name {
        // The page first: once the registry lets the name go, a newcomer may take it.
        if let Some(web) = &handler.context.web {
            web.left(name, &reason.to_string());
        }
        handler.context.registry.leave(name, &handler.outbox, reason);
    }
    handler.place = None; // the address's place is free as soon as the client has left
    // Dropping the handler drops its outbox sender; once the registry's copy
    // is gone too, the writer writes what is queued and ends.
    drop(handler);
    let _ = writer.join();
    debug!("{peer}: connection closed");
    drop(live);
}

/// The state of one connection's handler thread.
struct Handler {
    context: Arc<Context>,
    /// This client's queue to its writer thread.
    outbox: Outbox,
    /// This client's video queue (both ends), cloned for each streaming thread.
    video: Queue,
    /// The playback in progress, if any.
    playing: Option<Playback>,
    /// The id of the last stream started on this connection (0: none yet).
    last_stream: u32,
    reader: FrameReader<JoinClock>,
    peer: SocketAddr,
    /// Set once the join succeeded.
    name: Option<String>,
    /// Counts this connection among those waiting to join, until it has.
    pending: Option<PendingJoin>,
    /// Its place among the clients joined from its address, while joined.
    place: Option<Place>,
}

impl Handler {
    /// Joins, then serves messages until the connection ends; returns how it ended.
    fn run(&mut self) -> LeaveReason {
        let joined = self.join();
        self.pending = None;
        match joined {
            Ok(name) => self.name = Some(name),
            Err(Some(refusal)) => {
                // The reason may quote the peer's bytes (serde names what it
                // did not expect): never let them reach the log raw.
                info!("{}: join refused: {}", self.peer, visible(&refusal.to_string()));
                let _ = self.outbox.send(&ServerMessage::Refused { code: refusal.code(), reason: refusal.to_string() });
                return LeaveReason::Disconnected;
            }
            Err(None) => return LeaveReason::Disconnected,
        }
        loop {
            let received = self.reader.recv::<ClientMessage>();
            if self.context.live.closing() {
                return LeaveReason::Disconnected;
            }
            match received {
                Ok(ClientMessage::Send { envelope }) => self.handle_send(envelope),
                Ok(ClientMessage::Quit) => {
                    let _ = self.outbox.send(&ServerMessage::Goodbye);
                    return LeaveReason::Quit;
                }
                Ok(ClientMessage::ListVideos) => self.handle_list_videos(),
                Ok(ClientMessage::Play { video, pace, start, plan }) => {
                    self.handle_play(video, pace, start.unwrap_or(0), plan.unwrap_or_default())
                }
                Ok(ClientMessage::Stop { stream }) => self.handle_stop(stream),
                Ok(ClientMessage::Pause { stream }) => self.steer(stream, Command::Pause),
                Ok(ClientMessage::Resume { stream }) => self.steer(stream, Command::Resume),
                Ok(ClientMessage::Seek { stream, frame }) => self.steer(stream, Command::Seek(frame)),
                Ok(ClientMessage::Hello { .. }) => self.reply_error("already joined".into()),
                // The frame was whole, so the stream is still in step: say
                // what was wrong and keep serving.
                Err(RecvError::Message(e)) => self.reply_error(e.to_string()),
                Err(RecvError::Frame(FrameError::Closed)) => return LeaveReason::Disconnected,
                Err(RecvError::Frame(e)) => {
                    // The byte stream is broken: nothing after it can be trusted.
                    warn!("{}: closing connection: {e}", self.describe());
                    self.reply_error(e.to_string());
                    return LeaveReason::Disconnected;
                }
            }
        }
    }

    /// Reads and checks the hello. `Err(None)`: the peer left without one.
    fn join(&mut self) -> Result<String, Option<Refusal>> {
        let hello = match self.reader.recv::<ClientMessage>() {
            Ok(hello) => hello,
            Err(RecvError::Frame(FrameError::Closed)) => return Err(None),
            Err(RecvError::Frame(FrameError::Io(e)))
                if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) =>
            {
                return Err(Some(Refusal::Protocol(format!("no hello within {} s", JOIN_DEADLINE.as_secs()))));
            }
            Err(e) => return Err(Some(Refusal::Protocol(format!("expected a hello: {e}")))),
        };
        let ClientMessage::Hello { version, name, public_key } = hello else {
            return Err(Some(Refusal::Protocol("the first message must be a hello".into())));
        };
        if version != PROTOCOL_VERSION {
            return Err(Some(Refusal::Version(version)));
        }
        validate_name(&name).map_err(|e| Some(e.into()))?;
        // Parsing the key is the only RSA work the server does; it happens
        // here, on this client's thread, before the registry lock is taken.
        let key = PeerKey::from_pem(&public_key).map_err(|e| Some(e.into()))?;
        let canonical = key.to_pem().map_err(|e| Some(e.into()))?;
        let fingerprint = key.fingerprint();
        // A place at this address first (given back if the join fails, as the guard drops).
        // An IPv4-mapped IPv6 address counts as its IPv4 one.
        let address = self.peer.ip().to_canonical();
        let place = self.context.per_address.take(address).map_err(|limit| Some(Refusal::AddressLimit(limit)))?;
        self.context.registry.join(&name, canonical.into(), &self.outbox).map_err(Some)?;
        self.place = place;
        if let Some(web) = &self.context.web {
            web.joined(&name, fingerprint, self.peer);
        }
        // Joined: no more deadline, and frames may now be full size.
        self.reader.get_mut().deadline = None;
        let _ = self.reader.get_mut().stream.set_read_timeout(None);
        self.reader.set_max_len(MAX_FRAME_LEN);
        Ok(name)
    }

    fn handle_send(&mut self, envelope: Envelope) {
        // Fault injection, compiled into unit tests only: proves that a
        // handler that panics is contained and cleaned up (see tests below).
        #[cfg(test)]
        if envelope.id == tests::PANIC_ID {
            panic!("fault injected by a test");
        }
        if let Err(e) = envelope.check_limits() {
            return self.reply_error(e.to_string());
        }
        let from = self.name.as_deref().unwrap_or_default();
        let (to, bytes) = (envelope.to.clone(), envelope.sealed_len());
        // For the web page: the ciphertext's first bytes, nothing else of it.
        let head: Vec<u8> = envelope.ciphertext.iter().take(CIPHERTEXT_HEAD).copied().collect();
        match self.context.registry.relay(from, envelope, self.context.config.relay) {
            Ok(receivers) => {
                info!("{from} -> {to}: {bytes} sealed bytes relayed to {receivers} client(s)");
                Traffic::add(&self.context.traffic.relayed, 1);
                if let Some(web) = &self.context.web {
                    web.relayed(from, &to, &head, bytes, receivers, self.context.config.relay);
                }
            }
            Err(e @ (RelayError::UnknownRecipient(_) | RelayError::TooSlow(_))) => self.reply_error(e.to_string()),
            Err(e) => warn!("{from} -> {to}: not relayed: {e}"),
        }
    }

    fn handle_list_videos(&mut self) {
        let videos = match library::scan(&self.context.config.videos) {
            Ok(videos) => videos
                .iter()
                .map(|video| VideoInfo { prepared: self.context.prepared.fraction(video), ..video.info() })
                .collect(),
            Err(e) => {
                warn!("cannot read the video directory {}: {e}", self.context.config.videos.display());
                self.reply_error("the server cannot read its video directory".into());
                Vec::new()
            }
        };
        self.reply(&ServerMessage::VideoList { videos });
    }

    /// Starts a streaming thread for `name`. Every outcome is answered with
    /// a stream end, so the client never waits for nothing.
    fn handle_play(&mut self, name: String, pace: Pace, start: u32, plan: PlanKind) {
        self.last_stream = self.last_stream.wrapping_add(1).max(1);
        let id = self.last_stream;
        let refuse = |handler: &Self, message: String| {
            let end = ServerMessage::StreamEnd {
                stream: id,
                reason: EndReason::Error,
                frames: 0,
                total: None,
                message: Some(message),
            };
            handler.reply(&end);
        };
        if self.playing.as_ref().is_some_and(|p| !p.flags.ended.load(Ordering::SeqCst)) {
            return refuse(self, "a video is already playing on this connection; stop it first".into());
        }
        if plan == PlanKind::Adaptive && pace == Pace::None {
            return refuse(self, "the adaptive plan needs pace native: unpaced, every link looks too slow".into());
        }
        self.stop_stream(); // reaps a finished one
        let video = match library::find(&self.context.config.videos, &name) {
            Ok(Some(video)) => video,
            Ok(None) => return refuse(self, format!("no video named \"{name}\"")),
            Err(e) => {
                warn!("cannot read the video directory: {e}");
                return refuse(self, "the server cannot read its video directory".into());
            }
        };
        let job = Job {
            id,
            video,
            pace,
            start,
            plan,
            jpeg_quality: i32::from(self.context.config.jpeg_quality),
            cache: Arc::clone(&self.context.frames),
            decoders: Arc::clone(&self.context.decoders),
            prepared: Arc::clone(&self.context.prepared),
            traffic: Arc::clone(&self.context.traffic),
            web: self.context.web.clone(),
            viewer: self.name.clone().unwrap_or_default(),
        };
        if plan == PlanKind::Adaptive {
            adaptive::cap_send_buffer(&self.reader.get_mut().stream);
        }
        info!("{}: plays {name} (stream {id}, pace {pace:?}, plan {plan:?})", self.describe());
        match play::start(job, self.video.clone(), self.peer) {
            Ok(playback) => self.playing = Some(playback),
            Err(e) => refuse(self, format!("cannot start a streaming thread: {e}")),
        }
    }

    fn handle_stop(&mut self, stream: u32) {
        match &self.playing {
            // Also for a stream that has just ended: the stop crossed its end.
            Some(playback) if playback.id == stream => playback.stop(),
            _ => self.reply_error(format!("no stream {stream} is playing")),
        }
    }

    /// Passes a pause, resume or seek on to the stream it names; the
    /// streaming thread answers it.
    fn steer(&mut self, stream: u32, command: Command) {
        match &self.playing {
            Some(playback) if playback.id == stream && !playback.flags.ended.load(Ordering::SeqCst) => {
                if playback.commands.try_send(command).is_err() {
                    self.reply_error(format!("stream {stream} has {MAX_WAITING_COMMANDS} commands waiting already"));
                }
            }
            _ => self.reply_error(format!("no stream {stream} is playing")),
        }
    }

    /// Stops the playback in progress, if any, and waits for its thread.
    fn stop_stream(&mut self) {
        if let Some(playback) = self.playing.take() {
            playback.stop();
            let Playback { commands, thread, .. } = playback;
            // A paused stream waits on its commands: with them gone, it ends.
            drop(commands);
            let _ = thread.join();
        }
    }

    fn reply(&self, message: &ServerMessage) {
        if self.outbox.send(message).is_err() {
            self.outbox.kick("outbox overflow");
        }
    }

    fn reply_error(&self, message: String) {
        debug!("{}: error reply: {}", self.describe(), visible(&message));
        if self.outbox.send(&ServerMessage::Error { message }).is_err() {
            self.outbox.kick("outbox overflow while replying with errors");
        }
    }

    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.peer),
            None => self.peer.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::thread;
    use std::time::Duration;

    use crate::server::{self, Config, Shutdown};
    use crate::shared::connection::{FrameReader, FrameWriter};
    use crate::shared::crypto::Identity;
    use crate::shared::limits::{MAX_FRAME_LEN, PROTOCOL_VERSION};
    use crate::shared::message::{ClientMessage, Envelope, LeaveReason, ServerMessage};

    /// The envelope id that makes a handler panic.
    pub(super) const PANIC_ID: &str = "inject-a-panic";

    fn join(
        address: std::net::SocketAddr,
        name: &str,
        key: &Identity,
    ) -> (FrameReader<TcpStream>, FrameWriter<TcpStream>) {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reader = FrameReader::new(stream.try_clone().unwrap(), MAX_FRAME_LEN);
        let mut writer = FrameWriter::new(stream);
        let hello =
            ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.into(), public_key: key.public_pem().into() };
        writer.send(&hello).unwrap();
        assert!(matches!(reader.recv::<ServerMessage>().unwrap(), ServerMessage::Welcome { .. }));
        (reader, writer)
    }

    #[test]
    fn a_handler_that_panics_loses_only_its_own_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = Shutdown::new(&listener).unwrap();
        let stopper = shutdown.clone();
        let server = thread::spawn(move || server::run(listener, Config::default(), stopper));
        let key = Identity::generate().unwrap();

        let (mut bob, _bob_writer) = join(address, "bob", &key);
        let (_alice, mut alice_writer) = join(address, "alice", &key);
        assert!(matches!(bob.recv::<ServerMessage>().unwrap(), ServerMessage::PeerJoined { .. }));
        let envelope = Envelope {
            id: PANIC_ID.into(),
            to: "bob".into(),
            sent_at: 0,
            wrapped_key: vec![],
            nonce: vec![0; 12],
            ciphertext: vec![],
            signature: vec![],
        };
        alice_writer.send(&ClientMessage::Send { envelope }).unwrap();

        // alice's handler panicked: she is cleaned up like any disconnect...
        let left = bob.recv::<ServerMessage>().unwrap();
        assert_eq!(left, ServerMessage::PeerLeft { name: "alice".into(), reason: LeaveReason::Disconnected });
        // ...her name is free, and the registry (and its lock) still work.
        let (_again, _) = join(address, "alice", &key);
        assert!(matches!(bob.recv::<ServerMessage>().unwrap(), ServerMessage::PeerJoined { .. }));

        shutdown.trigger();
        server.join().unwrap().unwrap();
    }
}
