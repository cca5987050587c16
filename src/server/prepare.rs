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
use std::time::{Duration, Instant};

use log::{info, warn};
use sha2::{Digest, Sha256};

use super::decoder::{Decoder, Decoders, Encoder, FrameError, file_name};
use super::library::{self, Video};
use super::sources::{Version, add_source, canonical, read_sources, take_lock, version};
use super::store::{self, Entry, EntryWriter};

/// How often the directory is read for new or changed files.
const SCAN_INTERVAL: Duration = Duration::from_secs(2);
/// How often a long preparation logs how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

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

    /// A stream could not read `source`'s entry: the next scan checks it
    /// again, and no stream is handed the open copy meanwhile.
    pub(crate) fn spoiled(&self, source: &Path) {
        if let Some((_, Progress::Ready(entry))) = lock(&self.files).remove(source) {
            lock(&self.open).remove(&entry);
        }
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
    let hashes = read_sources(&dir);
    let mut preparer = Preparer { prepared, videos, dir, decoders, stop, writable, hashes };
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
    /// The content hash of each source file (by canonical path) at the
    /// version it was hashed: from the store's sources files at start, so a
    /// file is hashed again only when it changes.
    hashes: HashMap<PathBuf, (Version, String)>,
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

    /// Finds, checks or makes the entry of `path`. A bug here (a panic) costs
    /// this file its preparation, never the thread: every other file goes on.
    fn prepare(&mut self, path: &Path, now: Version) -> Progress {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.try_prepare(path, now)));
        attempt.unwrap_or_else(|_| {
            warn!("{}: preparing it failed (internal error); it is decoded as it plays", file_name(path));
            Progress::Failed
        })
    }

    fn try_prepare(&mut self, path: &Path, now: Version) -> Progress {
        let quality = self.prepared.quality;
        let key = canonical(path);
        let hash = match self.hashes.get(&key) {
            Some((then, hash)) if *then == now => hash.clone(),
            _ => match hash_file(path, &self.stop) {
                Ok(hash) => {
                    self.hashes.insert(key, (now, hash.clone()));
                    hash
                }
                Err(_) if self.stopped() => return Progress::Waiting,
                Err(e) => {
                    warn!("{}: cannot read it to prepare it: {e}", file_name(path));
                    return Progress::Failed;
                }
            },
        };
        let name = store::entry_name(&hash, quality);
        let entry = self.dir.join(&name);
        if self.verified(&entry) {
            // Recording the source needs the entry's lock; without it (another
            // server holds it) the entry is served all the same.
            if let Ok(Some(_lock)) = take_lock(&entry.with_extension("lock")) {
                self.record_source(&name, path, now);
            }
            return Progress::Ready(entry);
        }
        if !self.writable {
            return Progress::Failed;
        }
        // The directory may have been deleted since the server started.
        if let Err(e) = fs::create_dir_all(&self.dir) {
            return self.unwritable(e);
        }
        // Two servers sharing a store: whoever holds the lock prepares, the other waits for it.
        let _lock = match take_lock(&entry.with_extension("lock")) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Progress::Waiting,
            Err(e) => return self.unwritable(e),
        };
        // The other server may have finished it while we waited.
        if !(entry.exists() && store::verify(&entry, quality, &self.stop).is_ok()) {
            match self.build(path, now, &entry) {
                Ok(Built::Done) => {}
                Ok(Built::Abandoned) => return Progress::Waiting,
                Err(BuildError::Source(e)) => {
                    warn!("{}: cannot prepare it: {e}", file_name(path));
                    return Progress::Failed;
                }
                Err(BuildError::Store(e)) => return self.unwritable(e),
            }
        }
        // Still under the lock, so `--clean-store` never sees the entry without its source.
        self.record_source(&name, path, now);
        Progress::Ready(entry)
    }

    /// Whether `entry` exists and checks out; a damaged one is reported (and rebuilt by the caller).
    fn verified(&self, entry: &Path) -> bool {
        if !entry.exists() {
            return false;
        }
        match store::verify(entry, self.prepared.quality, &self.stop) {
            Ok(()) => true,
            Err(e) => {
                if !self.stopped() {
                    warn!("{}: {e}; preparing it again", entry.display());
                }
                false
            }
        }
    }

    /// Decodes every frame of `path` into a new entry.
    fn build(&self, path: &Path, now: Version, entry: &Path) -> Result<Built, BuildError> {
        let started = Instant::now();
        let info = self.decoders.info(path, now.1).map_err(BuildError::Source)?;
        if info.frames == 0 || info.frames > store::MAX_FRAMES {
            return Err(BuildError::Source(format!("{} frames", info.frames)));
        }
        let quality = self.prepared.quality;
        let (mut decoder, mut encoder) = (Decoder::new(path), Encoder::new(quality));
        let mut writer = EntryWriter::create(entry).map_err(BuildError::Store)?;
        info!("preparing {}: {} frames", file_name(path), info.frames);
        let (mut logged, mut decoded) = (Instant::now(), 0u32);
        for index in 0..info.frames {
            if self.stopped() {
                return Ok(Built::Abandoned);
            }
            let nominal = Duration::from_secs_f64(f64::from(index) / info.fps);
            match decoder.decode_to_jpeg(index, nominal, &mut encoder) {
                Ok(frame) => {
                    decoded += 1;
                    writer.push(Some(&frame.jpeg), frame.pts)
                }
                Err(FrameError::Damaged) => writer.push(None, nominal),
                Err(FrameError::Failed(e)) => return Err(BuildError::Source(e)),
            }
            .map_err(BuildError::Store)?;
            // Below 1.0 until the entry is in the store: 1.0 means a stream can use it.
            let fraction = f64::from(index) / f64::from(info.frames);
            self.prepared.set(path, now, Progress::Preparing(fraction));
            if logged.elapsed() >= PROGRESS_EVERY {
                logged = Instant::now();
                info!("preparing {}: {:.0} %", file_name(path), fraction * 100.0);
            }
        }
        if decoded == 0 {
            return Err(BuildError::Source("no frame decodes".into()));
        }
        if version(path) != Some(now) {
            return Ok(Built::Abandoned);
        }
        let frames = writer.finish(quality, info.fps).map_err(BuildError::Store)?;
        let bytes = fs::metadata(entry).map(|m| m.len()).unwrap_or(0);
        info!(
            "prepared {}: {frames} frames, {:.1} MB in the store, {:.1} s",
            file_name(path),
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        Ok(Built::Done)
    }

    /// Adds `path` to the sources of entry `name`; the caller holds its lock.
    fn record_source(&self, name: &str, path: &Path, now: Version) {
        if let Err(e) = add_source(&self.dir, name, path, now) {
            warn!("{name}: cannot record where it came from: {e}");
        }
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

/// How a build ended, when nothing went wrong.
enum Built {
    /// The entry is in the store.
    Done,
    /// Stopped, or the file changed meanwhile: the next scan starts again.
    Abandoned,
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
