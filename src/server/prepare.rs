//! Preparing the library: one background thread that keeps the store
//! ([`store`](super::store)) in step with the video directory. Started by
//! [`run`](super::run) when there is a store, stopped at shutdown.
//!
//! Every few seconds it reads the directory. For each file it has not seen
//! at this size and modification time, it finds the file's entry — named by
//! the SHA-256 of its content — and checks it, or makes it: every frame
//! decoded once, encoded as JPEG, appended. Progress goes to the log and,
//! through [`Prepared::fraction`], into every `video_list`. Streams ask
//! [`Prepared::entry`] for a file's entry; until it is ready they decode,
//! exactly as without a store.
//!
//! The store is an optimisation, never a requirement: a directory that
//! cannot be written gives one warning and the server carries on decoding.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::decoder::{Decoder, Decoders, Encoder, FrameError, file_name};
use super::library::{self, Video};
use super::store::{self, Entry, EntryWriter};

/// How often the directory is read for new or changed files.
const SCAN_INTERVAL: Duration = Duration::from_secs(2);
/// How often a long preparation logs how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// A file as it is on disk: its size and modification time.
type Version = (u64, Option<SystemTime>);

fn version(path: &Path) -> Option<Version> {
    let metadata = fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()))
}

/// Where one source file stands.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    /// Not looked at yet, or waiting for another server preparing it.
    Waiting,
    /// This fraction of its frames is in the store.
    Preparing(f64),
    /// Its entry is in the store, checked.
    Ready(PathBuf),
    /// It cannot be prepared (it does not decode, or the store cannot be written).
    Failed,
}

/// What the preparing thread and the streaming threads share.
pub(crate) struct Prepared {
    /// The store directory; `None` with `--store none`.
    dir: Option<PathBuf>,
    quality: i32,
    files: Mutex<HashMap<PathBuf, (Version, Progress)>>,
    /// Entries open for streams, shared by every stream of a file.
    open: Mutex<HashMap<PathBuf, Weak<Entry>>>,
}

impl Prepared {
    pub(crate) fn new(dir: Option<PathBuf>, quality: i32) -> Prepared {
        Prepared { dir, quality, files: Mutex::default(), open: Mutex::default() }
    }

    /// How much of `video` is prepared, from 0.0 to 1.0; `None` without a
    /// store, or when a file of it cannot be prepared (it is decoded as it
    /// plays, as without a store).
    pub(crate) fn fraction(&self, video: &Video) -> Option<f64> {
        self.dir.as_ref()?;
        let now: Vec<(&Path, Option<Version>)> =
            video.resolutions.iter().map(|r| (r.path.as_path(), version(&r.path))).collect();
        let files = lock(&self.files);
        let of_file = |(path, now): &(&Path, Option<Version>)| match files.get(*path) {
            Some((version_then, progress)) if *now == Some(*version_then) => match progress {
                Progress::Ready(_) => Some(1.0),
                Progress::Preparing(fraction) => Some(*fraction),
                Progress::Waiting => Some(0.0),
                Progress::Failed => None,
            },
            _ => Some(0.0),
        };
        let sum: f64 = now.iter().map(of_file).sum::<Option<f64>>()?;
        Some(sum / video.resolutions.len().max(1) as f64)
    }

    /// The store entry of `source` as the file is now, if it is ready.
    pub(crate) fn entry(&self, source: &Path) -> Option<Arc<Entry>> {
        let now = version(source)?;
        let path = match lock(&self.files).get(source) {
            Some((then, Progress::Ready(path))) if *then == now => path.clone(),
            _ => return None,
        };
        if let Some(entry) = lock(&self.open).get(&path).and_then(Weak::upgrade) {
            return Some(entry);
        }
        // Opened without the lock (it reads the index); two streams racing
        // here both open it, and the second one's copy is the one kept.
        match Entry::open(&path) {
            Ok(entry) => {
                let entry = Arc::new(entry);
                let mut open = lock(&self.open);
                open.retain(|_, weak| weak.strong_count() > 0);
                open.insert(path, Arc::downgrade(&entry));
                Some(entry)
            }
            Err(e) => {
                warn!("{}: {e}; it will be prepared again", path.display());
                self.spoiled(source);
                None
            }
        }
    }

    /// A stream could not read `source`'s entry: the next scan checks it again.
    pub(crate) fn spoiled(&self, source: &Path) {
        lock(&self.files).remove(source);
    }

    fn set(&self, source: &Path, version: Version, progress: Progress) {
        lock(&self.files).insert(source.to_path_buf(), (version, progress));
    }
}

/// Keeps the store in step with `videos` until `stop` is set.
pub(crate) fn run(prepared: Arc<Prepared>, videos: PathBuf, decoders: Arc<Decoders>, stop: Arc<AtomicBool>) {
    let Some(dir) = prepared.dir.clone() else { return };
    let writable = match fs::create_dir_all(&dir) {
        Ok(()) => true,
        Err(e) => {
            warn!("the store {} cannot be created ({e}): videos are decoded as they play", dir.display());
            false
        }
    };
    let sources = read_sources(&dir);
    let mut preparer = Preparer { prepared, videos, dir, decoders, stop, writable, sources };
    while !preparer.stopped() {
        preparer.scan();
        let rested = Instant::now();
        while rested.elapsed() < SCAN_INTERVAL && !preparer.stopped() {
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The preparing thread's own state.
struct Preparer {
    prepared: Arc<Prepared>,
    videos: PathBuf,
    dir: PathBuf,
    decoders: Arc<Decoders>,
    stop: Arc<AtomicBool>,
    /// False once a write failed: entries already there are still used.
    writable: bool,
    /// Which entry each source file (by canonical path) had when last prepared.
    sources: HashMap<PathBuf, (Version, String)>,
}

impl Preparer {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Prepares every file that is new or changed since the last scan.
    fn scan(&mut self) {
        let Ok(videos) = library::scan(&self.videos) else { return };
        let paths: Vec<(PathBuf, Option<Version>)> =
            videos.iter().flat_map(|v| v.resolutions.iter().map(|r| (r.path.clone(), version(&r.path)))).collect();
        let mut changed = Vec::new();
        {
            let mut files = lock(&self.prepared.files);
            files.retain(|path, _| paths.iter().any(|(p, _)| p == path));
            for (path, now) in paths {
                let Some(now) = now else { continue };
                match files.get(&path) {
                    Some((then, Progress::Ready(_) | Progress::Failed)) if *then == now => {}
                    _ => {
                        files.insert(path.clone(), (now, Progress::Waiting));
                        changed.push((path, now));
                    }
                }
            }
        }
        for (path, now) in changed {
            if self.stopped() {
                return;
            }
            let progress = self.prepare(&path, now);
            self.prepared.set(&path, now, progress);
        }
    }

    /// Finds, checks or makes the entry of `path`.
    fn prepare(&mut self, path: &Path, now: Version) -> Progress {
        let quality = self.prepared.quality;
        let name = match self.sources.get(&canonical(path)) {
            Some((then, name)) if *then == now => name.clone(),
            _ => match hash_file(path, &self.stop) {
                Ok(hash) => store::entry_name(&hash, quality),
                Err(_) if self.stopped() => return Progress::Waiting,
                Err(e) => {
                    warn!("{}: cannot read it to prepare it: {e}", file_name(path));
                    return Progress::Failed;
                }
            },
        };
        let entry = self.dir.join(&name);
        if entry.exists() {
            match store::verify(&entry, quality) {
                Ok(()) => return self.ready(path, now, name),
                Err(e) => warn!("{}: {e}; preparing it again", entry.display()),
            }
        }
        if !self.writable {
            return Progress::Failed;
        }
        // Two servers sharing a store: whoever holds the lock prepares, the other waits for it.
        let lock = match take_lock(&entry.with_extension("lock")) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Progress::Waiting,
            Err(e) => return self.unwritable(e),
        };
        if entry.exists() && store::verify(&entry, quality).is_ok() {
            return self.ready(path, now, name);
        }
        let outcome = self.build(path, now, &entry);
        drop(lock);
        match outcome {
            Ok(Some(())) => self.ready(path, now, name),
            Ok(None) => Progress::Waiting,
            Err(BuildError::Source(e)) => {
                warn!("{}: cannot prepare it: {e}", file_name(path));
                Progress::Failed
            }
            Err(BuildError::Store(e)) => self.unwritable(e),
        }
    }

    /// Decodes every frame of `path` into a new entry. `None`: stopped, or
    /// the file changed meanwhile (the next scan starts again).
    fn build(&self, path: &Path, now: Version, entry: &Path) -> Result<Option<()>, BuildError> {
        let started = Instant::now();
        let info = self.decoders.info(path, now.1).map_err(BuildError::Source)?;
        let quality = self.prepared.quality;
        let (mut decoder, mut encoder) = (Decoder::new(path), Encoder::new(quality));
        let mut writer = EntryWriter::create(entry).map_err(BuildError::Store)?;
        info!("preparing {}: {} frames", file_name(path), info.frames);
        let mut logged = Instant::now();
        for index in 0..info.frames {
            if self.stopped() {
                return Ok(None);
            }
            let nominal = Duration::from_secs_f64(f64::from(index) / info.fps);
            match decoder.decode_to_jpeg(index, nominal, &mut encoder) {
                Ok(frame) => writer.push(Some(&frame.jpeg), frame.pts),
                Err(FrameError::Damaged) => writer.push(None, nominal),
                Err(FrameError::Failed(e)) => return Err(BuildError::Source(e)),
            }
            .map_err(BuildError::Store)?;
            let fraction = f64::from(index + 1) / f64::from(info.frames);
            self.prepared.set(path, now, Progress::Preparing(fraction));
            if logged.elapsed() >= PROGRESS_EVERY {
                logged = Instant::now();
                info!("preparing {}: {:.0} %", file_name(path), fraction * 100.0);
            }
        }
        if version(path) != Some(now) {
            return Ok(None);
        }
        let frames = writer.finish(quality, info.fps).map_err(BuildError::Store)?;
        let bytes = fs::metadata(entry).map(|m| m.len()).unwrap_or(0);
        info!(
            "prepared {}: {frames} frames, {:.1} MB in the store, {:.1} s",
            file_name(path),
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        Ok(Some(()))
    }

    /// Records that `path` is served from entry `name`.
    fn ready(&mut self, path: &Path, now: Version, name: String) -> Progress {
        let key = canonical(path);
        if self.sources.get(&key).is_none_or(|(then, known)| *then != now || *known != name) {
            if let Err(e) = add_source(&self.dir, &name, path, now) {
                warn!("{name}: cannot record where it came from: {e}");
            }
            self.sources.insert(key, (now, name.clone()));
        }
        Progress::Ready(self.dir.join(name))
    }

    fn unwritable(&mut self, e: io::Error) -> Progress {
        if self.writable {
            warn!(
                "the store {} cannot be written ({e}): videos not yet prepared are decoded as they play",
                self.dir.display()
            );
            self.writable = false;
        }
        Progress::Failed
    }
}

enum BuildError {
    /// The video cannot be read.
    Source(String),
    /// The store cannot be written.
    Store(io::Error),
}

/// The SHA-256 of a file's content, first 128 bits in hex.
fn hash_file(path: &Path, stop: &AtomicBool) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("stopped"));
        }
        match file.read(&mut buffer)? {
            0 => break,
            n => hasher.update(&buffer[..n]),
        }
    }
    Ok(hasher.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// Locks `path` (created if missing) for this process; `None` if another holds it.
fn take_lock(path: &Path) -> io::Result<Option<File>> {
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

/// Adds `path` to the sources of entry `name` (written whole, then renamed).
fn add_source(dir: &Path, name: &str, path: &Path, now: Version) -> io::Result<()> {
    let source = Source::new(path, now);
    let mut sources = read_entry_sources(dir, name);
    sources.retain(|s| s.path != source.path);
    sources.push(source);
    let target = sources_path(dir, name);
    let temporary = target.with_extension(format!("sources-tmp-{}", std::process::id()));
    fs::write(&temporary, serde_json::to_vec_pretty(&sources).map_err(io::Error::other)?)?;
    fs::rename(&temporary, &target)
}

/// Which entry each source file had, from every sources file in the store:
/// a file seen before at the same size and time is not hashed again.
fn read_sources(dir: &Path) -> HashMap<PathBuf, (Version, String)> {
    let mut known = HashMap::new();
    let Ok(listing) = fs::read_dir(dir) else { return known };
    for file in listing.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let Some(entry) = name.strip_suffix(".sources").map(|stem| format!("{stem}.frames")) else { continue };
        for source in read_entry_sources(dir, &entry) {
            if source.unchanged()
                && let Some(now) = version(&source.path)
            {
                known.insert(source.path, (now, entry.clone()));
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
/// still there as it was, with its sources, lock and temporary files.
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
        if read_entry_sources(dir, &name).iter().any(Source::unchanged) {
            cleaned.kept += 1;
            continue;
        }
        // A server preparing this entry holds its lock: leave it be.
        let Some(_lock) = take_lock(&frames.with_extension("lock"))? else {
            cleaned.busy += 1;
            continue;
        };
        if let Ok(metadata) = fs::metadata(&frames) {
            cleaned.removed += 1;
            cleaned.bytes += metadata.len();
        }
        let stem = name.trim_end_matches(".frames");
        for file in fs::read_dir(dir)?.flatten() {
            let file_name = file.file_name().to_string_lossy().into_owned();
            if file_name.split_once('.').is_some_and(|(s, _)| s == stem) {
                fs::remove_file(file.path())?;
            }
        }
    }
    Ok(cleaned)
}

/// The absolute path of a file without links, as sources files record it.
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
