//! The menu, and the dialogues behind its options.
//!
//! The main thread runs this for the whole session, after joining: it owns
//! stdin, so every question the user answers is asked here, one at a time,
//! while the reader thread prints events around the prompts. Sealing a
//! message is RSA work, done here with no lock held, so the reader thread
//! is never kept waiting for it.

use super::console::{Answer, Console};
use super::dialogue::{Flow, ask_choice};
use super::inbox::Inbox;
use super::player::{self, Viewing};
use super::session::Session;
use super::trust;
use crate::shared::message::ClientMessage;
use crate::shared::visible::{visible, visible_capped};

/// The menu loop; returns when the user quits or input ends.
pub(crate) fn run(console: &mut Console, session: &Session, media: &Inbox, viewing: Viewing) {
    loop {
        println!(
            "1. Available clients / send a message\n2. Video playback\n3. Quit\n4. Peers: fingerprints, accept a changed key, mark verified"
        );
        let choice = match console.ask("> ") {
            Answer::Line(line) => line,
            Answer::Eof | Answer::Interrupted => return,
        };
        let flow = match choice.trim() {
            "1" => send_flow(console, session),
            "2" => video_flow(console, session, media, viewing),
            "3" => return,
            "4" => trust::peers_flow(console, session),
            "" => Flow::Menu,
            other => {
                println!("Unknown choice \"{}\": type 1, 2, 3 or 4.", visible(other));
                Flow::Menu
            }
        };
        if let Flow::Quit = flow {
            return;
        }
    }
}

/// Option 1: list peers, ask for a recipient and a message, seal, send.
fn send_flow(console: &mut Console, session: &Session) -> Flow {
    let peers = session.peers().list();
    if peers.is_empty() {
        println!("No other clients online.");
        return Flow::Menu;
    }
    let shown: Vec<String> = peers.iter().map(|p| visible(&p.name).into_owned()).collect();
    println!("Available clients: {}", shown.join(", "));
    // Each with its fingerprint, to compare with the owner's own (option 4).
    for (peer, shown) in peers.iter().zip(&shown) {
        let mark = if peer.verified { "  verified" } else { "" };
        println!("  {shown}  {}{mark}", peer.fingerprint);
    }
    let to = loop {
        let to = match ask_choice(console, "Send to: ") {
            Ok(to) => to,
            Err(flow) => return flow,
        };
        if session.peers().contains(&to) {
            break to;
        }
        println!("No client named {}.", visible(&to));
    };
    // The key the user decides about: the message is sealed to this one only.
    let Some(seen) = session.peers().fingerprint(&to) else { return Flow::Menu };
    let change = session.peers().unconfirmed_change(&to);
    if let Some((was, now)) = change {
        let (name, was_fingerprint) = (visible(&to), was.fingerprint);
        session.printer.event(&format!("warning: KEY CHANGED for {name}: was {was_fingerprint}, now {now}"));
        // A verified key that changed is a hard stop: only comparing again unlocks it.
        if was.verified {
            println!(
                "not sent: you verified {name}'s old key; compare the new one with {name} and mark it verified first (option 4)"
            );
            return Flow::Menu;
        }
        match console.ask("Send anyway? [y/N]: ") {
            Answer::Line(answer) if matches!(answer.trim(), "y" | "Y" | "yes") => {
                let mut peers = session.peers();
                if !peers.accept_change(&to, seen) {
                    println!("not sent: {}'s key changed again meanwhile", visible(&to));
                    return Flow::Menu;
                }
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
        // The key changed while the message was typed: it is not the one the user chose.
        Some(Ok(key)) if key.fingerprint() != seen => {
            println!("not sent: {}'s key changed while you were typing (see the warning above)", visible(&to));
            return Flow::Menu;
        }
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

/// Option 2: list the videos, ask which one, play it.
fn video_flow(console: &mut Console, session: &Session, media: &Inbox, viewing: Viewing) -> Flow {
    let Some(videos) = player::request_list(session, media) else {
        return Flow::Menu;
    };
    if videos.is_empty() {
        println!("No videos available. (The server's video directory is empty: run `make videos` there.)");
        return Flow::Menu;
    }
    println!("Available videos:");
    for (i, video) in videos.iter().enumerate() {
        let labels: Vec<String> = video.resolutions.iter().map(|r| visible_capped(r).into_owned()).collect();
        println!("  {}. {} ({}){}", i + 1, visible_capped(&video.name), labels.join(", "), preparing(video.prepared));
    }
    let chosen = loop {
        let answer = match ask_choice(console, "Video (number or name): ") {
            Ok(answer) => answer,
            Err(flow) => return flow,
        };
        let by_number = answer.parse::<usize>().ok().and_then(|n| n.checked_sub(1)).and_then(|i| videos.get(i));
        match by_number.or_else(|| videos.iter().find(|v| v.name == answer)) {
            Some(video) => break video.name.clone(),
            None => println!("No video {}.", visible(&answer)),
        }
    };
    player::play(session, media, console, &chosen, Viewing { display: viewing.display.resolve(), ..viewing });
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
/// ` (preparing 40 %)` for a video the server is still preparing (it plays
/// meanwhile, decoded as it goes); nothing once it is ready or without a store.
fn preparing(prepared: Option<f64>) -> String {
    match prepared {
        Some(fraction) if fraction.is_finite() && fraction < 1.0 => {
            format!(" (preparing {} %)", (fraction.max(0.0) * 100.0).floor())
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::preparing;

    #[test]
    fn a_video_being_prepared_says_how_far_and_a_ready_one_says_nothing() {
        assert_eq!(preparing(Some(0.4)), " (preparing 40 %)");
        assert_eq!(preparing(Some(0.999)), " (preparing 99 %)", "never 100 % before it is ready");
        assert_eq!(preparing(Some(-3.0)), " (preparing 0 %)");
        assert_eq!(preparing(Some(1.0)), "");
        assert_eq!(preparing(Some(7.0)), "");
        assert_eq!(preparing(None), "", "a server without a store");
    }
}
