//! Who this client is: its key pair, and the peers it trusted on earlier runs.
//!
//! Run once by the main thread, before connecting. With an identity file the
//! key and the fingerprints of known peers survive across runs (beside the
//! key, in `PATH.known_peers`), so a changed key can be noticed; without
//! one, a fresh key is made and nobody is known yet.

use std::path::Path;

use super::peers::KnownPeers;
use crate::shared::crypto::Identity;

/// Loads (or creates) the key at `path` and its known peers, or makes a
/// fresh key when there is no file. `Err`: the line to print.
pub(crate) fn load(path: Option<&Path>) -> Result<(Identity, KnownPeers), String> {
    let Some(path) = path else {
        let identity = Identity::generate().map_err(|e| format!("cannot generate a key: {e}"))?;
        return Ok((identity, KnownPeers::default()));
    };
    let (identity, _) = Identity::load_or_create(path).map_err(|e| e.to_string())?;
    let mut known_path = path.as_os_str().to_owned();
    known_path.push(".known_peers");
    let known = KnownPeers::load(known_path.into())?;
    Ok((identity, known))
}
