//! Who this client is: its key pair, and the peers it trusted on earlier runs.
//!
//! Run by the main thread while joining, once the name is known. Trust on
//! first use only means something if the client is the same one next time,
//! so by default the key is kept, per name, under
//! `$XDG_CONFIG_HOME/ciphercast/` (`~/.config/ciphercast/` when unset), with
//! the fingerprints of known peers (`….known_peers`) and the ids of the
//! messages it opened (`….seen`, see `freshness.rs`) beside it: run the
//! client twice as `alice` and it shows the same fingerprint, and a peer
//! whose key changed between the runs is noticed. `--identity PATH` names
//! the file instead; `--ephemeral` makes a fresh key that nothing is
//! written for (tests, scripts).
//!
//! Like ssh, a key file that others can read is refused, with how to fix it.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::peers::KnownPeers;
use crate::shared::crypto::Identity;

/// Where the client's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// One file per name in the configuration directory (the default).
    PerName,
    /// This file (`--identity`).
    File(PathBuf),
    /// A fresh key, kept in memory only (`--ephemeral`).
    Ephemeral,
}

/// A loaded identity: the key, the peers it trusts, and where the ids of
/// messages it has opened are remembered (`None`: in memory only).
pub(crate) struct Loaded {
    pub(crate) identity: Identity,
    pub(crate) known: KnownPeers,
    pub(crate) seen: Option<PathBuf>,
}

/// Loads (or creates) the key for `name` and its known peers. `Err`: the
/// line to print.
pub(crate) fn load(source: &IdentitySource, name: &str) -> Result<Loaded, String> {
    let path = match source {
        IdentitySource::Ephemeral => {
            let identity = Identity::generate().map_err(|e| format!("cannot generate a key: {e}"))?;
            return Ok(Loaded { identity, known: KnownPeers::default(), seen: None });
        }
        IdentitySource::File(path) => path.clone(),
        IdentitySource::PerName => {
            let dir = config_dir()?;
            create_private_dir(&dir)?;
            dir.join(file_name_for(name))
        }
    };
    refuse_if_readable_by_others(&path)?;
    let (identity, _) = Identity::load_or_create(&path).map_err(|e| e.to_string())?;
    let beside = |suffix: &str| {
        let mut path = path.clone().into_os_string();
        path.push(suffix);
        PathBuf::from(path)
    };
    let known = KnownPeers::load(beside(".known_peers"))?;
    Ok(Loaded { identity, known, seen: Some(beside(".seen")) })
}

/// `$XDG_CONFIG_HOME/ciphercast`, or `$HOME/.config/ciphercast`.
fn config_dir() -> Result<PathBuf, String> {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    let base = absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".config")))
        .ok_or("no home directory to keep the key in (HOME is not set): use --identity PATH or --ephemeral")?;
    Ok(base.join("ciphercast"))
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// At most this many bytes of the readable part of a key file's name (32
/// CJK characters encode to 288; a file name may have 255 at most).
const READABLE_PREFIX: usize = 48;

/// The key file's name for `name`: the name with every byte outside
/// `[A-Za-z0-9_]` percent-encoded (so `/` and `..` cannot leave the
/// directory), cut to [`READABLE_PREFIX`] bytes, then a hash of the exact
/// name (so `Bob` and `bob` never share a file on a case-insensitive file
/// system, and two long names that start alike never share one either).
pub(crate) fn file_name_for(name: &str) -> String {
    let mut file = String::new();
    for byte in name.bytes() {
        let encoded = if byte.is_ascii_alphanumeric() || byte == b'_' {
            (byte as char).to_string()
        } else {
            format!("%{byte:02X}")
        };
        if file.len() + encoded.len() > READABLE_PREFIX {
            break;
        }
        file.push_str(&encoded);
    }
    let hash: String = Sha256::digest(name.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{file}-{hash}.pem")
}

/// A private key others can read is not private: refuse it, as ssh does.
fn refuse_if_readable_by_others(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{} can be read by others (mode {mode:o}): a private key must not be. Fix it with: chmod 600 '{}'",
                    path.display(),
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_names_stay_in_the_directory_and_tell_case_apart() {
        assert!(file_name_for("alice").starts_with("alice-") && file_name_for("alice").ends_with(".pem"));
        assert_ne!(file_name_for("Bob"), file_name_for("bob"));
        assert_ne!(file_name_for("Bob").to_lowercase(), file_name_for("bob").to_lowercase());
        for name in ["../etc/passwd", "a/b", "..", "é t"] {
            let file = file_name_for(name);
            assert!(!file.contains('/') && !file.starts_with('.') && !file.contains(' '), "{name}: {file}");
        }
        assert!(file_name_for("..").starts_with("%2E%2E-"));
        let long = "李".repeat(32);
        assert!(file_name_for(&long).len() + ".known_peers.tmp-4294967295".len() < 255, "{}", file_name_for(&long));
        assert_ne!(file_name_for(&long), file_name_for(&format!("{}王", "李".repeat(31))));
    }

    #[test]
    #[cfg(unix)]
    fn a_key_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("ciphercast-open-key-{}.pem", std::process::id()));
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load(&IdentitySource::File(path.clone()), "a").err().unwrap();
        assert!(error.contains("chmod 600"), "{error}");
        fs::remove_file(&path).unwrap();
    }
}
