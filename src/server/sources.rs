//! What the store knows of its sources: for each entry, the files it was
//! made from (`<entry>.sources`, JSON), so that a file seen before at the
//! same size and time is not hashed again, and so that `ciphercast videos
//! --clean-store` can tell which entries no file needs any more. Also the
//! lock file that keeps two servers from writing one entry. Used by the
//! preparing thread, and by `videos --clean-store` on the main thread.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::store;

/// A file as it is on disk: its size and modification time.
pub(crate) type Version = (u64, Option<SystemTime>);

pub(crate) fn version(path: &Path) -> Option<Version> {
    let metadata = fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()))
}

/// Locks `path` (created if missing) for this process; `None` if another holds it.
pub(crate) fn take_lock(path: &Path) -> io::Result<Option<File>> {
    let file = File::options().create(true).truncate(false).write(true).open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// One source file an entry was made from, as `<entry>.sources` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// Modification time, nanoseconds since 1970.
    pub(crate) modified_ns: Option<u64>,
}

impl Source {
    fn new(path: &Path, (size, modified): Version) -> Source {
        let path = canonical(path);
        let since = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).ok();
        let modified_ns = modified.and_then(since).and_then(|d| u64::try_from(d.as_nanos()).ok());
        Source { path, size, modified_ns }
    }

    /// Whether the file is still there as it was.
    pub(crate) fn unchanged(&self) -> bool {
        version(&self.path).is_some_and(|now| Source::new(&self.path, now) == *self)
    }
}

/// The sources file beside entry `name`.
pub(crate) fn sources_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).with_extension("sources")
}

/// The sources an entry lists (none if its sources file is missing or unreadable).
pub(crate) fn read_entry_sources(dir: &Path, name: &str) -> Vec<Source> {
    fs::read(sources_path(dir, name)).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

/// Adds `path` to the sources of entry `name` (written whole, then
/// renamed). The caller holds the entry's lock.
pub(crate) fn add_source(dir: &Path, name: &str, path: &Path, now: Version) -> io::Result<()> {
    let source = Source::new(path, now);
    let mut sources = read_entry_sources(dir, name);
    sources.retain(|s| s.path != source.path);
    sources.push(source);
    let target = sources_path(dir, name);
    let temporary = target.with_extension(format!("sources-tmp-{}", std::process::id()));
    fs::write(&temporary, serde_json::to_vec_pretty(&sources).map_err(io::Error::other)?)?;
    fs::rename(&temporary, &target)
}

/// The content hash of every source file the store's sources files list,
/// at the version they list it (so a file seen before at the same size and
/// time is not hashed again, whatever JPEG quality its entries were made at).
pub(crate) fn read_sources(dir: &Path) -> HashMap<PathBuf, (Version, String)> {
    let mut known = HashMap::new();
    let Ok(listing) = fs::read_dir(dir) else { return known };
    for file in listing.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".sources").filter(|stem| store::is_entry_stem(stem)) else { continue };
        let Some((hash, _quality)) = stem.split_once("-q") else { continue };
        for source in read_entry_sources(dir, &format!("{stem}.frames")) {
            if source.unchanged()
                && let Some(now) = version(&source.path)
            {
                known.insert(source.path, (now, hash.to_string()));
            }
        }
    }
    known
}

/// What `ciphercast videos --clean-store` did.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Entries removed: their source files are gone or changed.
    pub removed: usize,
    /// Bytes those entries took.
    pub bytes: u64,
    /// Entries kept.
    pub kept: usize,
    /// Entries left alone because a server is preparing them right now.
    pub busy: usize,
}

/// Removes every entry of the store `dir` none of whose source files is
/// still there as it was, with its sources, lock and temporary files; and
/// the temporary files a stopped server left beside entries that are kept.
pub fn clean_store(dir: &Path) -> io::Result<Cleaned> {
    let mut cleaned = Cleaned::default();
    let mut names: Vec<String> = fs::read_dir(dir)?
        .flatten()
        .map(|file| file.file_name().to_string_lossy().into_owned())
        .filter_map(|name| Some(name.split_once('.')?.0.to_string()))
        .filter(|stem| store::is_entry_stem(stem))
        .map(|stem| format!("{stem}.frames"))
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let frames = dir.join(&name);
        // A server preparing this entry holds its lock: leave it be.
        let Some(_lock) = take_lock(&frames.with_extension("lock"))? else {
            cleaned.busy += 1;
            continue;
        };
        let keep = read_entry_sources(dir, &name).iter().any(Source::unchanged);
        if keep {
            cleaned.kept += 1;
        } else if let Ok(metadata) = fs::metadata(&frames) {
            cleaned.removed += 1;
            cleaned.bytes += metadata.len();
        }
        let stem = name.trim_end_matches(".frames");
        for file in fs::read_dir(dir)?.flatten() {
            let file_name = file.file_name().to_string_lossy().into_owned();
            let Some((of, extension)) = file_name.split_once('.') else { continue };
            // With the lock held, a temporary file is a stopped server's leftover.
            if of == stem && (!keep || extension.contains("tmp-")) {
                fs::remove_file(file.path())?;
            }
        }
    }
    Ok(cleaned)
}

/// The absolute path of a file without links, as sources files record it.
pub(crate) fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
