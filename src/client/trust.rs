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
use super::dialogue::{Flow, ask_choice};
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

/// `bob  3f2a 91c0 …`, with what the user knows of the key (a changed
/// key's old fingerprint on a line of its own, so the two are not confused).
fn describe(peer: &PeerView) -> String {
    let (name, fingerprint) = (visible(&peer.name), peer.fingerprint);
    match peer.replaced {
        Some(was) if was.verified => {
            format!("{name}  {fingerprint}  KEY CHANGED\n      (was {}, which you verified)", was.fingerprint)
        }
        Some(was) => format!(
            "{name}  {fingerprint}  KEY CHANGED\n      (was {}; the new one is not accepted yet)",
            was.fingerprint
        ),
        None if peer.verified => format!("{name}  {fingerprint}  verified"),
        None => format!("{name}  {fingerprint}"),
    }
}

/// What the user answered about a fingerprint.
enum Verdict {
    /// It matches: verified.
    Matches,
    /// Accept the changed key as it is, without comparing.
    Accept,
    /// Anything else (it differs, or no answer): nothing changes.
    Leave,
}

/// Asks the user to compare `peer`'s fingerprint with its owner's; a match
/// marks it verified. A changed key that was never verified may instead be
/// accepted as it is — a choice of its own, never what "no" leads to.
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
    let may_accept = peer.replaced.is_some_and(|was| !was.verified);
    let prompt = if may_accept {
        "Does it match exactly? [y: yes / a: accept it without comparing / N: no]: "
    } else {
        "Does it match exactly? [y/N]: "
    };
    let verdict = match console.ask(prompt) {
        Answer::Line(answer) => match answer.trim() {
            "y" | "Y" | "yes" => Verdict::Matches,
            "a" | "A" if may_accept => Verdict::Accept,
            _ => Verdict::Leave,
        },
        Answer::Interrupted => return Flow::Menu,
        Answer::Eof => return Flow::Quit,
    };
    // Only the key the user was shown: if it changed (or its owner left)
    // while they compared, nothing is marked.
    let seen = peer.fingerprint;
    let done = match verdict {
        Verdict::Matches => {
            save(session, |peers| peers.mark_verified(&peer.name, seen)).then(|| format!("{name} verified."))
        }
        Verdict::Accept => save(session, |peers| peers.accept_change(&peer.name, seen))
            .then(|| format!("{name}'s new key accepted, not verified.")),
        Verdict::Leave => {
            println!(
                "{name} not verified. If the fingerprints differ, someone else may be speaking for {name}: send nothing secret."
            );
            return Flow::Menu;
        }
    };
    match done {
        Some(done) => println!("{done}"),
        None => {
            println!("Nothing marked: {name}'s key changed, or {name} left, while you compared. Look again (option 4).")
        }
    }
    Flow::Menu
}

/// Changes the peers' trust with `change` and writes it to the known-peers
/// file; whether `change` did anything.
fn save(session: &Session, change: impl FnOnce(&mut super::peers::Peers) -> bool) -> bool {
    let mut peers = session.peers();
    if !change(&mut peers) {
        return false;
    }
    if let Err(e) = peers.save_known() {
        session.printer.error(&e);
    }
    true
}
