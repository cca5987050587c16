//! Menu option 4: the peers with their fingerprints, and what the user
//! knows of each key. Runs on the main thread, like the rest of the menu.
//!
//! Trust on first use believes whoever came first under a name. To know
//! that a key is really bob's, compare its fingerprint with the one bob's
//! own client shows him (`Your fingerprint: …`), aloud or side by side —
//! what Signal calls comparing safety numbers. A match is marked verified
//! in the known-peers file; from then on, a new key under bob's name stops
//! everything sent to bob until the user compares again.

use super::console::{Answer, Console};
use super::menu::{Flow, ask_choice};
use super::peers::PeerView;
use super::session::Session;
use crate::shared::visible::visible;

/// Option 4: list the peers, then verify one or accept its changed key.
pub(super) fn peers_flow(console: &mut Console, session: &Session) -> Flow {
    println!("Your fingerprint: {}", session.identity.fingerprint());
    let peers = session.peers().list();
    if peers.is_empty() {
        println!("No other clients online.");
        return Flow::Menu;
    }
    println!("Peers:");
    for peer in &peers {
        println!("  {}", describe(peer));
    }
    let peer = loop {
        let name = match ask_choice(console, "Verify whom? (name; empty: back to the menu): ") {
            Ok(name) => name,
            Err(flow) => return flow,
        };
        match peers.iter().find(|p| p.name == name) {
            Some(peer) => break peer,
            None => println!("No client named {}.", visible(&name)),
        }
    };
    verify(console, session, peer)
}

/// `bob  3f2a 91c0 …`, with what the user knows of the key.
fn describe(peer: &PeerView) -> String {
    let state = match peer.replaced {
        Some(was) if was.verified => {
            format!("  KEY CHANGED since you verified {}: nothing is sent until you verify again", was.fingerprint)
        }
        Some(was) => format!("  KEY CHANGED, was {}: not accepted", was.fingerprint),
        None if peer.verified => "  verified".to_string(),
        None => String::new(),
    };
    format!("{}  {}{state}", visible(&peer.name), peer.fingerprint)
}

/// Asks the user to compare `peer`'s fingerprint with its owner's; a match
/// marks it verified. A changed key that was never verified may instead be
/// accepted as it is.
fn verify(console: &mut Console, session: &Session, peer: &PeerView) -> Flow {
    let name = visible(&peer.name);
    if peer.verified {
        println!("{name} is verified already.");
        return Flow::Menu;
    }
    println!(
        "Ask {name} to read out the \"Your fingerprint\" line of their client (option 4 shows it), and compare it, group by group, with:\n  {}",
        peer.fingerprint
    );
    match ask_yes(console, "Does it match exactly? [y/N]: ") {
        Some(true) => {
            save(session, |peers| peers.mark_verified(&peer.name));
            println!("{name} verified.");
            return Flow::Menu;
        }
        Some(false) => {}
        None => return Flow::Quit,
    }
    if peer.replaced.is_some_and(|was| !was.verified) {
        match ask_yes(console, &format!("Accept {name}'s new key without verifying it? [y/N]: ")) {
            Some(true) => {
                save(session, |peers| peers.accept_change(&peer.name));
                println!("{name}'s new key accepted, not verified.");
                return Flow::Menu;
            }
            Some(false) => {}
            None => return Flow::Quit,
        }
    }
    println!(
        "{name} not verified. If the fingerprints differ, someone else may be speaking for {name}: send nothing secret."
    );
    Flow::Menu
}

/// `Some(true)` for y or yes, `Some(false)` for anything else, `None` at end of input.
fn ask_yes(console: &mut Console, prompt: &str) -> Option<bool> {
    match console.ask(prompt) {
        Answer::Line(answer) => Some(matches!(answer.trim(), "y" | "Y" | "yes")),
        Answer::Interrupted => Some(false),
        Answer::Eof => None,
    }
}

/// Changes the peers' trust with `change` and writes it to the known-peers file.
fn save(session: &Session, change: impl FnOnce(&mut super::peers::Peers)) {
    let mut peers = session.peers();
    change(&mut peers);
    if let Err(e) = peers.save_known() {
        session.printer.error(&e);
    }
}
