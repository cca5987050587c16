//! The interactive client.
//!
//! Two threads. The main thread owns the terminal's input: it asks for a
//! name, joins, then runs the menu, sealing and sending messages. The reader
//! thread ([`events`]) owns the socket's reading half and prints whatever the
//! server sends the moment it arrives. They share a [`Session`]: the local
//! registry of peers and the socket's writing half, each behind its own lock.

mod console;
mod display;
mod events;
mod freshness;
pub(crate) mod peers;
mod player;
mod terminal;

pub use display::Display;

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use console::{Answer, Console, Printer};
use crossbeam_channel::Receiver;
use peers::{KnownPeers, Peers};
use player::Media;

use crate::shared::connection::{FrameReader, FrameWriter, RecvError};
use crate::shared::crypto::Identity;
use crate::shared::limits::{CLIENT_READ_BUFFER, MAX_FRAME_LEN, PROTOCOL_VERSION, WRITE_TIMEOUT};
use crate::shared::message::{ClientMessage, Peer, RefusalCode, ServerMessage};
use crate::shared::names::validate_name;
use crate::shared::video::Pace;
use crate::shared::visible::visible;

/// How long to wait for the server to answer the hello or the quit.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Video messages that may wait between the reader thread and the player.
const MEDIA_QUEUE: usize = 8;

/// How the client was started.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST:PORT` of the server.
    pub server: String,
    /// Name to join under; asked for when `None`.
    pub name: Option<String>,
    /// Private key file; a fresh key per run when `None`.
    pub identity: Option<PathBuf>,
    /// Where videos play.
    pub display: Display,
    /// How fast the server sends video.
    pub pace: Pace,
    /// Print a line on stderr for every frame sent or received.
    pub trace: bool,
}

/// What both client threads share.
struct Session {
    name: String,
    identity: Identity,
    peers: Mutex<Peers>,
    writer: Mutex<FrameWriter<TcpStream>>,
    /// Set before we send Quit, so the reader takes the close calmly.
    quitting: AtomicBool,
    /// The main thread is waiting for video messages from the reader.
    media_wanted: AtomicBool,
    /// A playback is in progress: Ctrl-C stops it instead of quitting.
    playing: AtomicBool,
    /// Ctrl-C was pressed during playback.
    stop_wanted: AtomicBool,
    /// Message ids and timestamps seen, against replays.
    freshness: Mutex<freshness::Freshness>,
    printer: Printer,
}

impl Session {
    fn peers(&self) -> MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn freshness(&self) -> MutexGuard<'_, freshness::Freshness> {
        self.freshness.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, message: &ClientMessage) -> io::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.send(message).map_err(|e| io::Error::other(e.to_string()))
    }

    fn expect_media(&self, wanted: bool) {
        self.media_wanted.store(wanted, Ordering::SeqCst);
    }

    fn media_wanted(&self) -> bool {
        self.media_wanted.load(Ordering::SeqCst)
    }

    fn set_playing(&self, playing: bool) {
        self.stop_wanted.store(false, Ordering::SeqCst);
        self.playing.store(playing, Ordering::SeqCst);
    }

    fn stop_requested(&self) -> bool {
        self.stop_wanted.load(Ordering::SeqCst)
    }

    /// Says Quit, waits briefly for the goodbye, prints `bye`.
    fn quit(&self) {
        self.quitting.store(true, Ordering::SeqCst);
        let _ = self.send(&ClientMessage::Quit);
        println!("bye");
    }
}

/// Runs the client; returns the process exit status (0 quit, 1 refused or
/// server unreachable or gone).
pub fn run(config: Config) -> i32 {
    let mut console = Console::new();
    let printer = console.printer();
    let identity = match &config.identity {
        Some(path) => match Identity::load_or_create(path) {
            Ok((identity, _)) => identity,
            Err(e) => {
                printer.error(&e.to_string());
                return 1;
            }
        },
        None => match Identity::generate() {
            Ok(identity) => identity,
            Err(e) => {
                printer.error(&format!("cannot generate a key: {e}"));
                return 1;
            }
        },
    };
    let known = match &config.identity {
        Some(path) => {
            let mut known_path = path.clone().into_os_string();
            known_path.push(".known_peers");
            match KnownPeers::load(known_path.into()) {
                Ok(known) => known,
                Err(e) => {
                    printer.error(&e);
                    return 1;
                }
            }
        }
        None => KnownPeers::default(),
    };
    // Asking again only makes sense when a person is typing the name.
    let may_ask_again = config.name.is_none() && io::IsTerminal::is_terminal(&io::stdin());
    let mut name = config.name.clone();
    let mut shown_fingerprint = false;
    let (name, stream, reader, welcome) = loop {
        let candidate = match name.take() {
            Some(name) => name,
            None => match console.ask("Enter your name: ") {
                Answer::Line(line) => line.trim().to_string(),
                Answer::Eof | Answer::Interrupted => {
                    println!("bye");
                    return 0;
                }
            },
        };
        let refusal = match validate_name(&candidate) {
            Err(e) => format!("invalid name: {e}"),
            Ok(()) => {
                if !shown_fingerprint {
                    println!("Your fingerprint: {}", identity.fingerprint());
                    shown_fingerprint = true;
                }
                match join(&config.server, &candidate, &identity, config.trace) {
                    Ok(Joined::Welcome { stream, reader, peers }) => break (candidate, stream, reader, peers),
                    Ok(Joined::Refused(code, reason)) => {
                        let hint = match code {
                            RefusalCode::NameTaken | RefusalCode::InvalidName if !may_ask_again => {
                                "\n  Choose another name with --name."
                            }
                            RefusalCode::ServerFull => {
                                "\n  Try again when someone leaves, or ask for a larger --max-clients."
                            }
                            RefusalCode::Version => "\n  Use the same ciphercast version as the server.",
                            _ => "",
                        };
                        format!("{}{hint}", visible(&reason))
                    }
                    Err(e) => {
                        printer.error(&e);
                        return 1;
                    }
                }
            }
        };
        printer.error(&refusal);
        if !may_ask_again {
            return 1;
        }
    };

    println!("Connected to {} as {name}", config.server);
    let online = welcome.iter().map(|p| visible(&p.name).into_owned()).collect::<Vec<_>>();
    if online.is_empty() {
        println!("online: nobody else yet");
    } else {
        println!("online: {}", online.join(", "));
    }
    let mut peers = Peers::new(known);
    for peer in welcome {
        let arrival = peers.insert(&peer.name, peer.public_key);
        if let Some(line) = events::describe_arrival(&peer.name, &arrival) {
            printer.event(&line);
        }
    }
    if let Err(e) = peers.save_known() {
        printer.error(&e);
    }

    let session = Arc::new(Session {
        name,
        identity,
        peers: Mutex::new(peers),
        writer: Mutex::new(FrameWriter::new(stream).traced(config.trace.then(|| config.server.clone()))),
        quitting: AtomicBool::new(false),
        media_wanted: AtomicBool::new(false),
        playing: AtomicBool::new(false),
        stop_wanted: AtomicBool::new(false),
        freshness: Mutex::new(freshness::Freshness::default()),
        printer,
    });
    let (media_sender, media) = crossbeam_channel::bounded(MEDIA_QUEUE);
    let reader_session = Arc::clone(&session);
    let reader_thread = match thread::Builder::new()
        .name("reader".into())
        .spawn(move || events::run(reader_session, reader, media_sender))
    {
        Ok(handle) => handle,
        Err(e) => {
            session.printer.error(&format!("cannot start the reader thread: {e}"));
            return 1;
        }
    };
    // Outside the line editor (stdin piped, or a video playing), Ctrl-C is a
    // signal: it stops the playback, or quits as option 3 would. Inside the
    // editor, Ctrl-C is a key that `ask` reports.
    let signal_session = Arc::clone(&session);
    let _ = ctrlc::set_handler(move || {
        if signal_session.playing.load(Ordering::SeqCst) {
            signal_session.stop_wanted.store(true, Ordering::SeqCst);
        } else {
            signal_session.quit();
            terminal::exit(0);
        }
    });

    let options = (config.display, config.pace);
    menu(&mut console, &session, &media, options);
    session.quit();
    // The reader ends when the server closes after its goodbye.
    let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
    while !reader_thread.is_finished() && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    terminal::restore();
    0
}

/// The result of a hello.
enum Joined {
    Welcome { stream: TcpStream, reader: FrameReader<TcpStream>, peers: Vec<Peer> },
    Refused(RefusalCode, String),
}

/// Connects, says hello, and waits for the welcome or the refusal.
fn join(server: &str, name: &str, identity: &Identity, trace: bool) -> Result<Joined, String> {
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "cannot reach the server at {server}: {e}\n  Is it running? Start one with `make run-server` or `ciphercast server`, or point --server at it."
        )
    };
    let addresses = server.to_socket_addrs().map_err(|e| unreachable(&e))?;
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
    let stream = addresses
        .into_iter()
        .find_map(|address| {
            TcpStream::connect_timeout(&address, Duration::from_secs(5)).map_err(|e| last_error = e).ok()
        })
        .ok_or_else(|| unreachable(&last_error))?;
    let _ = stream.set_nodelay(true);
    // A server that stops reading must not hang the menu (or Ctrl-C) forever.
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let lost =
        |e: &dyn std::fmt::Display| format!("connection to the server at {server} lost: {}", visible(&e.to_string()));
    let read_half = stream.try_clone().map_err(|e| lost(&e))?;
    let _ = read_half.set_read_timeout(Some(REPLY_TIMEOUT));
    let label = trace.then(|| server.to_string());
    let mut reader = FrameReader::with_buffer(read_half, MAX_FRAME_LEN, CLIENT_READ_BUFFER).traced(label.clone());
    let hello =
        ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.into(), public_key: identity.public_pem().into() };
    FrameWriter::new(&stream).traced(label).send(&hello).map_err(|e| lost(&e))?;
    match reader.recv::<ServerMessage>() {
        Ok(ServerMessage::Welcome { peers, .. }) => {
            let _ = reader.get_mut().set_read_timeout(None);
            Ok(Joined::Welcome { stream, reader, peers })
        }
        Ok(ServerMessage::Refused { code, reason }) => Ok(Joined::Refused(code, reason)),
        Ok(other) => Err(format!("unexpected reply to the hello: {}", visible(&format!("{other:?}")))),
        Err(RecvError::Message(e)) => Err(lost(&e)),
        Err(RecvError::Frame(e)) => Err(lost(&e)),
    }
}

/// The menu loop; returns when the user quits or input ends.
fn menu(console: &mut Console, session: &Session, media: &Receiver<Media>, (display, pace): (Display, Pace)) {
    loop {
        println!("1. Available clients / send a message\n2. Video playback\n3. Quit");
        let choice = match console.ask("> ") {
            Answer::Line(line) => line,
            Answer::Eof | Answer::Interrupted => return,
        };
        let flow = match choice.trim() {
            "1" => send_flow(console, session),
            "2" => player::video_flow(console, session, media, display, pace),
            "3" => return,
            "" => Flow::Menu,
            other => {
                println!("Unknown choice \"{}\": type 1, 2 or 3.", visible(other));
                Flow::Menu
            }
        };
        if let Flow::Quit = flow {
            return;
        }
    }
}

/// Where a sub-dialogue leaves the user.
enum Flow {
    Menu,
    Quit,
}

/// Option 1: list peers, ask for a recipient and a message, seal, send.
fn send_flow(console: &mut Console, session: &Session) -> Flow {
    let names = session.peers().names();
    if names.is_empty() {
        println!("No other clients online.");
        return Flow::Menu;
    }
    let shown: Vec<String> = names.iter().map(|n| visible(n).into_owned()).collect();
    println!("Available clients: {}", shown.join(", "));
    // Each with its fingerprint, to compare with the owner's own.
    for (name, shown) in names.iter().zip(&shown) {
        if let Some(fingerprint) = session.peers().fingerprint(name) {
            println!("  {shown}  {fingerprint}");
        }
    }
    let to = loop {
        let to = match console.ask("Send to: ") {
            Answer::Line(line) => line.trim().to_string(),
            Answer::Interrupted => return Flow::Menu,
            Answer::Eof => return Flow::Quit,
        };
        if to.is_empty() {
            return Flow::Menu;
        }
        if session.peers().contains(&to) {
            break to;
        }
        println!("No client named {}.", visible(&to));
    };
    let change = session.peers().unconfirmed_change(&to);
    if let Some((was, now)) = change {
        session.printer.event(&format!("warning: KEY CHANGED for {}: was {was}, now {now}", visible(&to)));
        match console.ask("Send anyway? [y/N]: ") {
            Answer::Line(answer) if matches!(answer.trim(), "y" | "Y" | "yes") => {
                let mut peers = session.peers();
                peers.accept_change(&to);
                if let Err(e) = peers.save_known() {
                    session.printer.error(&e);
                }
            }
            Answer::Eof => return Flow::Quit,
            _ => {
                println!("not sent");
                return Flow::Menu;
            }
        }
    }
    let text = match read_message(console) {
        Ok(Some(text)) => text,
        Ok(None) => return Flow::Menu,
        Err(()) => return Flow::Quit,
    };
    let key = match session.peers().key(&to) {
        Some(Ok(key)) => key,
        Some(Err(e)) => {
            session.printer.error(&format!("cannot send to {to}: {e}"));
            return Flow::Menu;
        }
        None => {
            println!("No client named {}.", visible(&to));
            return Flow::Menu;
        }
    };
    // Sealing is RSA work: it runs with no lock held.
    match session.identity.seal(&session.name, &to, &key, &text) {
        Ok(envelope) => match session.send(&ClientMessage::Send { envelope }) {
            Ok(()) => println!("sent to {}", visible(&to)),
            Err(e) => session.printer.error(&format!("not sent: {e}")),
        },
        Err(e) => session.printer.error(&format!("not sent: {e}")),
    }
    Flow::Menu
}

/// Reads the message text: a line ending in `\` continues on the next line.
/// `Ok(None)`: empty (back to the menu); `Err`: end of input.
fn read_message(console: &mut Console) -> Result<Option<String>, ()> {
    let mut text = String::new();
    let mut prompt = "Message: ";
    loop {
        let line = match console.ask(prompt) {
            Answer::Line(line) => line,
            Answer::Interrupted => return Ok(None),
            Answer::Eof => return Err(()),
        };
        match line.strip_suffix('\\') {
            Some(head) => {
                text.push_str(head);
                text.push('\n');
                prompt = "... ";
            }
            None => {
                text.push_str(&line);
                break;
            }
        }
    }
    Ok(if text.is_empty() { None } else { Some(text) })
}
