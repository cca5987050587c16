//! Joining: connect, say hello, and read the server's welcome or refusal.
//!
//! Run by the main thread before any other thread starts, so it reads the
//! socket itself, with a timeout: a server that never answers the hello must
//! not hang the client. A refused name is asked for again only when a person
//! is typing it; a script gets exit status 1 and a hint instead.

use std::io::{self, IsTerminal};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::console::{Answer, Console, Printer};
use super::events::describe_arrival;
use super::identity::{self, IdentitySource};
use super::peers::{KnownPeers, Peers};
use super::throttle::Throttled;
use crate::shared::connection::{FrameReader, FrameWriter, RecvError};
use crate::shared::crypto::Identity;
use crate::shared::frame::FrameError;
use crate::shared::limits::{CLIENT_READ_BUFFER, MAX_FRAME_LEN, MAX_MAX_CLIENTS, PROTOCOL_VERSION, WRITE_TIMEOUT};
use crate::shared::message::{ClientMessage, Peer, RefusalCode, ServerMessage};
use crate::shared::names::validate_name;
use crate::shared::visible::{visible, visible_capped};

/// How long to wait for the server to answer the hello or the quit.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long to try each of the server's addresses.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that has joined: who it is, its socket's halves, who is online.
pub(crate) struct Joined {
    /// The name the server accepted.
    pub(crate) name: String,
    /// Our key, as loaded for that name.
    pub(crate) identity: Identity,
    /// Where the ids of messages we opened are kept, if anywhere.
    pub(crate) seen: Option<std::path::PathBuf>,
    /// The writing half, for the session.
    pub(crate) writer: FrameWriter<TcpStream>,
    /// The reading half, for the reader thread.
    pub(crate) reader: FrameReader<Throttled>,
    /// Everyone the welcome listed, with what their keys mean for trust.
    pub(crate) peers: Peers,
}

/// Asks for a name (unless given), joins `server` under it, and prints the
/// welcome. `Err` is the exit status: 0 when input ended at the name
/// prompt (after `bye`), 1 when the server is unreachable or the join was
/// refused for good (the reason printed on stderr).
pub(crate) fn join(
    console: &mut Console,
    server: &str,
    mut name: Option<String>,
    source: &IdentitySource,
    link: Link,
) -> Result<Joined, i32> {
    let printer = console.printer();
    // Asking again only makes sense when a person is typing the name.
    let may_ask_again = name.is_none() && io::stdin().is_terminal();
    // The key last loaded, and the name it was loaded for (a key per name by default).
    let mut loaded: Option<(String, identity::Loaded)> = None;
    loop {
        let candidate = match name.take() {
            Some(name) => name,
            None => match console.ask("Enter your name: ") {
                Answer::Line(line) => line.trim().to_string(),
                Answer::Eof | Answer::Interrupted => {
                    println!("bye");
                    return Err(0);
                }
            },
        };
        let refusal = match validate_name(&candidate) {
            Err(e) => format!("invalid name: {e}"),
            Ok(()) => {
                let reload = match (&loaded, source) {
                    (None, _) => true,
                    (Some((for_name, _)), IdentitySource::PerName) => *for_name != candidate,
                    _ => false,
                };
                if reload {
                    match identity::load(source, &candidate) {
                        Ok(identity) => {
                            println!("Your fingerprint: {}", identity.identity.fingerprint());
                            loaded = Some((candidate.clone(), identity));
                        }
                        Err(e) => {
                            printer.error(&e);
                            return Err(1);
                        }
                    }
                }
                let Some((_, ours)) = &loaded else { return Err(1) };
                match hello(server, &candidate, &ours.identity, link) {
                    Ok(Reply::Welcome { writer, reader, peers }) => {
                        let Some((_, identity::Loaded { identity, known, seen })) = loaded.take() else {
                            return Err(1);
                        };
                        let peers = welcome(server, &candidate, peers, known, &printer);
                        return Ok(Joined { name: candidate, identity, seen, writer, reader, peers });
                    }
                    Ok(Reply::Refused(code, reason)) => {
                        format!("{}{}", visible_capped(&reason), refusal_hint(code, may_ask_again))
                    }
                    Err(e) => {
                        printer.error(&e);
                        return Err(1);
                    }
                }
            }
        };
        printer.error(&refusal);
        if !may_ask_again {
            return Err(1);
        }
    }
}

/// What the user can do about a refusal, as a second line; often nothing.
fn refusal_hint(code: RefusalCode, may_ask_again: bool) -> &'static str {
    match code {
        RefusalCode::NameTaken | RefusalCode::InvalidName | RefusalCode::ConfusableName if !may_ask_again => {
            "\n  Choose another name with --name."
        }
        RefusalCode::AddressLimit => {
            "\n  Someone at your address must leave first, or ask for a larger --max-per-address."
        }
        RefusalCode::ServerFull => "\n  Try again when someone leaves, or ask for a larger --max-clients.",
        RefusalCode::Version => "\n  Use the same ciphercast version as the server.",
        _ => "",
    }
}

/// The server's answer to a hello.
enum Reply {
    Welcome { writer: FrameWriter<TcpStream>, reader: FrameReader<Throttled>, peers: Vec<Peer> },
    Refused(RefusalCode, String),
}

/// How the connection is made: traced or not, and how fast it may be read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    /// `--trace`: a line on stderr per frame.
    pub(crate) trace: bool,
    /// `--max-kbps`: at most this many kbit/s read from the server.
    pub(crate) max_kbps: Option<u32>,
}

/// Connects, says hello, and waits for the welcome or the refusal.
fn hello(server: &str, name: &str, identity: &Identity, Link { trace, max_kbps }: Link) -> Result<Reply, String> {
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "cannot reach the server at {server}: {e}\n  Is it running? Start one with `make run-server` or `ciphercast server`, or point --server at it."
        )
    };
    let addresses = server.to_socket_addrs().map_err(|e| unreachable(&e))?;
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
    let stream = addresses
        .into_iter()
        .find_map(|address| TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(|e| last_error = e).ok())
        .ok_or_else(|| unreachable(&last_error))?;
    let _ = stream.set_nodelay(true);
    // A server that stops reading must not hang the menu (or Ctrl-C) forever.
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let lost =
        |e: &dyn std::fmt::Display| format!("connection to the server at {server} lost: {}", visible(&e.to_string()));
    // Two handles on one socket: the reader thread will own one, the
    // session's writer the other, so reading never waits for writing.
    let read_half = stream.try_clone().map_err(|e| lost(&e))?;
    let _ = read_half.set_read_timeout(Some(REPLY_TIMEOUT));
    let read_half = Throttled::new(read_half, max_kbps);
    let label = trace.then(|| server.to_string());
    let mut reader = FrameReader::with_buffer(read_half, MAX_FRAME_LEN, CLIENT_READ_BUFFER).traced(label.clone());
    let mut writer = FrameWriter::new(stream).traced(label);
    let hello =
        ClientMessage::Hello { version: PROTOCOL_VERSION, name: name.into(), public_key: identity.public_pem().into() };
    writer.send(&hello).map_err(|e| lost(&e))?;
    match reader.recv::<ServerMessage>() {
        Ok(ServerMessage::Welcome { peers, .. }) => {
            // Joined: from now on the reader waits as long as the session lasts.
            let _ = reader.get_mut().socket().set_read_timeout(None);
            Ok(Reply::Welcome { writer, reader, peers })
        }
        Ok(ServerMessage::Refused { code, reason }) => Ok(Reply::Refused(code, reason)),
        Ok(other) => Err(format!("unexpected reply to the hello: {}", visible(&format!("{other:?}")))),
        Err(RecvError::Frame(FrameError::Io(e)))
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
        {
            Err(format!("the server at {server} did not answer for {} s", REPLY_TIMEOUT.as_secs()))
        }
        Err(RecvError::Message(e)) => Err(lost(&e)),
        Err(RecvError::Frame(e)) => Err(lost(&e)),
    }
}

/// Prints who we are connected as and who is online, and records their
/// keys: the registry the menu sends from, and the trust it implies.
fn welcome(server: &str, name: &str, mut online: Vec<Peer>, known: KnownPeers, printer: &Printer) -> Peers {
    println!("Connected to {server} as {name}");
    if online.len() > MAX_MAX_CLIENTS {
        printer.event(&format!(
            "warning: the server listed {} peers, more than any server may have; only the first {MAX_MAX_CLIENTS} are kept",
            online.len()
        ));
        online.truncate(MAX_MAX_CLIENTS);
    }
    // Only the names the registry accepts are listed as online (not our own
    // name, a look-alike or an invalid one: those get a warning below).
    let mut peers = Peers::new(known, name);
    let (mut names, mut notices) = (Vec::new(), Vec::new());
    for peer in online {
        let arrival = peers.insert(&peer.name, peer.public_key);
        if peers.contains(&peer.name) {
            names.push(visible(&peer.name).into_owned());
        }
        notices.extend(describe_arrival(&peer.name, &arrival));
    }
    if names.is_empty() {
        println!("online: nobody else yet");
    } else {
        println!("online: {}", names.join(", "));
    }
    for line in notices {
        printer.event(&line);
    }
    if let Err(e) = peers.save_known() {
        printer.error(&e);
    }
    peers
}
