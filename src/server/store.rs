//! The prepared library on disk: every frame of every rendition, decoded and
//! JPEG-encoded once, so that streaming it is only reading and sending.
//! Written by the preparing thread ([`prepare`](super::prepare)), read by
//! the streaming threads.
//!
//! This is what HLS and DASH servers do — encode when a video is added,
//! then only send — and why a prepared stream costs a hundredth of a cold
//! one: no decoding, no encoding, wherever in the video each viewer is.
//!
//! One file per source file and JPEG quality, named after the SHA-256 of
//! the source's content, so that a copy or a second name of one file is
//! prepared once:
//!
//! ```text
//! <hash>-q<quality>.frames    JPEGs back to back | index | footer
//!   index   per frame: offset u64 | length u32 (0: the frame does not decode) | presentation time µs u64
//!   footer  "CCFRAMES" | version u32 | quality u32 | frames u32 | fps f64 | index offset u64 | SHA-256 of all before it
//! <hash>-q<quality>.sources   the source files it was made from (JSON), for `videos --clean-store`
//! <hash>-q<quality>.lock      locked by the server preparing it, so that two servers sharing a store never both write it
//! ```
//!
//! Integers are little-endian. A file is written under a temporary name and
//! renamed when complete, so no reader ever sees half of one; its digest is
//! checked ([`verify`]) before anyone streams from it, so a damaged or
//! truncated file is rebuilt, never streamed.
//!
//! A stream reads about a second of frames at a time ([`Reader`]): one read
//! and one allocation per segment, and every frame a slice of it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::ops::{Deref, Range};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"CCFRAMES";
const VERSION: u32 = 1;
/// Bytes of one index record.
const RECORD_LEN: usize = 8 + 4 + 8;
/// Bytes of the footer before its digest.
const FOOTER_FIELDS: usize = 8 + 4 + 4 + 4 + 8 + 8;
/// Bytes of the footer, digest included.
const FOOTER_LEN: usize = FOOTER_FIELDS + 32;
/// At most this many frames per segment read by a stream (a second at 30 fps).
const SEGMENT_FRAMES: usize = 30;
/// At most this many bytes per segment (a single larger frame is read alone).
const SEGMENT_BYTES: u64 = 4 << 20;
/// The most frames a store file may index (ten hours at 60 fps).
pub(crate) const MAX_FRAMES: u32 = 2_160_000;

/// Where a frame is in a store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    offset: u64,
    /// 0: the frame does not decode.
    len: u32,
    pts_micros: u64,
}

/// The name of the store file for a source whose content hashes to `hash`.
pub(crate) fn entry_name(hash: &str, quality: i32) -> String {
    format!("{hash}-q{quality}.frames")
}

/// Whether `stem` (a file name up to its first dot) names a store entry:
/// 32 hex digits, `-q`, a quality. Nothing else in a directory is ever
/// taken for part of the store.
pub(crate) fn is_entry_stem(stem: &str) -> bool {
    stem.split_once("-q").is_some_and(|(hash, quality)| {
        hash.len() == 32
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && !quality.is_empty()
            && quality.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A store file, open for reading and shared by every stream of its rendition.
pub(crate) struct Entry {
    file: File,
    index: Vec<Record>,
    fps: f64,
}

impl Entry {
    /// Opens a store file and reads its index. Checks its structure, not its
    /// digest: that is [`verify`]'s job, done once before an entry is used.
    pub(crate) fn open(path: &Path) -> Result<Entry, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let length = file.metadata().map_err(|e| e.to_string())?.len();
        let footer = Footer::read(&file, length)?;
        let mut bytes = vec![0; footer.frames as usize * RECORD_LEN];
        file.read_exact_at(&mut bytes, footer.index_offset).map_err(|e| format!("index: {e}"))?;
        let index: Vec<Record> = bytes
            .chunks_exact(RECORD_LEN)
            .map(|r| Record {
                offset: u64::from_le_bytes(r[0..8].try_into().unwrap_or_default()),
                len: u32::from_le_bytes(r[8..12].try_into().unwrap_or_default()),
                pts_micros: u64::from_le_bytes(r[12..20].try_into().unwrap_or_default()),
            })
            .collect();
        // Frames lie back to back from the start, and the data ends where the index begins.
        let mut expected = 0u64;
        for record in &index {
            if record.offset != expected {
                return Err("its index does not describe its data".into());
            }
            expected += u64::from(record.len);
        }
        if expected != footer.index_offset {
            return Err("its index does not describe its data".into());
        }
        Ok(Entry { file, index, fps: footer.fps })
    }

    /// Frames indexed (the last one decodes).
    pub(crate) fn frames(&self) -> u32 {
        self.index.len() as u32
    }

    /// Frames per second of the source.
    pub(crate) fn fps(&self) -> f64 {
        self.fps
    }
}

/// The fixed fields at the end of a store file.
struct Footer {
    quality: u32,
    frames: u32,
    fps: f64,
    index_offset: u64,
}

impl Footer {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_FIELDS);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.quality.to_le_bytes());
        out.extend_from_slice(&self.frames.to_le_bytes());
        out.extend_from_slice(&self.fps.to_le_bytes());
        out.extend_from_slice(&self.index_offset.to_le_bytes());
        out
    }

    /// Reads and checks the footer of a file of `length` bytes.
    fn read(file: &File, length: u64) -> Result<Footer, String> {
        let start = length.checked_sub(FOOTER_LEN as u64).ok_or("too short to be a store file")?;
        let mut bytes = [0; FOOTER_FIELDS];
        file.read_exact_at(&mut bytes, start).map_err(|e| format!("footer: {e}"))?;
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        if &bytes[..8] != MAGIC || u32_at(8) != VERSION {
            return Err("not a store file of this version".into());
        }
        let footer = Footer {
            quality: u32_at(12),
            frames: u32_at(16),
            fps: f64::from_bits(u64_at(20)),
            index_offset: u64_at(28),
        };
        let index_end =
            (footer.frames as u64).checked_mul(RECORD_LEN as u64).and_then(|n| n.checked_add(footer.index_offset));
        if footer.frames > MAX_FRAMES || index_end != Some(start) || !(footer.fps > 0.0 && footer.fps <= 1000.0) {
            return Err("its footer does not describe it".into());
        }
        Ok(footer)
    }
}

/// Checks a whole store file: its structure and the digest of every byte.
/// Gives up (with an error) as soon as `stop` is set.
pub(crate) fn verify(path: &Path, quality: i32, stop: &AtomicBool) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let length = file.metadata().map_err(|e| e.to_string())?.len();
    let footer = Footer::read(&file, length)?;
    if i64::from(footer.quality) != i64::from(quality) {
        return Err(format!("made at JPEG quality {}", footer.quality));
    }
    let mut hasher = Sha256::new();
    let mut left = length - 32;
    let mut buffer = vec![0; 1 << 20];
    while left > 0 {
        if stop.load(Ordering::Relaxed) {
            return Err("stopped".into());
        }
        let chunk = left.min(buffer.len() as u64) as usize;
        file.read_exact(&mut buffer[..chunk]).map_err(|e| e.to_string())?;
        hasher.update(&buffer[..chunk]);
        left -= chunk as u64;
    }
    let mut digest = [0; 32];
    file.read_exact(&mut digest).map_err(|e| e.to_string())?;
    if hasher.finalize()[..] != digest {
        return Err("its digest does not match its content".into());
    }
    Entry::open(path).map(|_| ())
}

/// Writes a store file: frames in order, then [`EntryWriter::finish`]. Until
/// then it is a temporary file, removed if the writer is dropped.
pub(crate) struct EntryWriter {
    out: BufWriter<File>,
    hasher: Sha256,
    index: Vec<Record>,
    written: u64,
    temporary: PathBuf,
    path: PathBuf,
    finished: bool,
}

impl EntryWriter {
    /// Starts the store file `path` (under a temporary name beside it).
    pub(crate) fn create(path: &Path) -> io::Result<EntryWriter> {
        let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
        let out = BufWriter::with_capacity(1 << 20, File::create(&temporary)?);
        Ok(EntryWriter {
            out,
            hasher: Sha256::new(),
            index: Vec::new(),
            written: 0,
            temporary,
            path: path.to_path_buf(),
            finished: false,
        })
    }

    /// Appends the next frame; `None` for a frame that does not decode.
    pub(crate) fn push(&mut self, jpeg: Option<&[u8]>, pts: Duration) -> io::Result<()> {
        let bytes = jpeg.unwrap_or_default();
        let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("a frame over 4 GiB"))?;
        self.index.push(Record { offset: self.written, len, pts_micros: pts.as_micros() as u64 });
        self.write(bytes)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Writes the index and footer, makes the file durable and gives it its
    /// name. Frames at the end that never decoded are left out.
    pub(crate) fn finish(mut self, quality: i32, fps: f64) -> io::Result<u32> {
        while self.index.last().is_some_and(|r| r.len == 0) {
            self.index.pop();
        }
        let frames = u32::try_from(self.index.len()).ok().filter(|&n| n > 0 && n <= MAX_FRAMES);
        let frames = frames.ok_or_else(|| io::Error::other("no frame decodes"))?;
        let index_offset = self.written;
        let mut index = Vec::with_capacity(self.index.len() * RECORD_LEN);
        for record in &self.index {
            index.extend_from_slice(&record.offset.to_le_bytes());
            index.extend_from_slice(&record.len.to_le_bytes());
            index.extend_from_slice(&record.pts_micros.to_le_bytes());
        }
        self.write(&index)?;
        let quality = u32::try_from(quality).map_err(|_| io::Error::other("negative quality"))?;
        self.write(&Footer { quality, frames, fps, index_offset }.encode())?;
        let digest = std::mem::take(&mut self.hasher).finalize();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        fs::rename(&self.temporary, &self.path)?;
        self.finished = true;
        Ok(frames)
    }
}

impl Drop for EntryWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Bytes shared with other frames: a slice of a segment (or all of a cached frame).
#[derive(Clone)]
pub(crate) struct Slice {
    bytes: Arc<[u8]>,
    range: Range<usize>,
}

impl From<Arc<[u8]>> for Slice {
    fn from(bytes: Arc<[u8]>) -> Slice {
        let range = 0..bytes.len();
        Slice { bytes, range }
    }
}

impl Deref for Slice {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.range.clone()]
    }
}

/// One stream's reading position in one store file.
pub(crate) struct Reader {
    entry: Arc<Entry>,
    /// The frames read last.
    segment: Option<Segment>,
}

/// Consecutive frames read at once.
struct Segment {
    /// Their indices.
    frames: Range<usize>,
    /// Where the first one starts in the file.
    base: u64,
    bytes: Arc<[u8]>,
}

impl Reader {
    pub(crate) fn new(entry: Arc<Entry>) -> Reader {
        Reader { entry, segment: None }
    }

    /// Frames in the store file.
    pub(crate) fn frames(&self) -> u32 {
        self.entry.frames()
    }

    /// Frames per second of its source.
    pub(crate) fn fps(&self) -> f64 {
        self.entry.fps()
    }

    /// Frame `index` and its presentation time; `Ok(None)` for a frame that
    /// does not decode. Reads the segment starting at it when it is not in
    /// the one read last.
    pub(crate) fn frame(&mut self, index: u32) -> Result<Option<(Slice, Duration)>, String> {
        let i = index as usize;
        let record = *self.entry.index.get(i).ok_or_else(|| format!("no frame {index} in the store file"))?;
        if record.len == 0 {
            return Ok(None);
        }
        let segment = match self.segment.take() {
            Some(segment) if segment.frames.contains(&i) => segment,
            _ => self.read_segment(i)?,
        };
        let start = (record.offset - segment.base) as usize;
        let slice = Slice { bytes: Arc::clone(&segment.bytes), range: start..start + record.len as usize };
        self.segment = Some(segment);
        Ok(Some((slice, Duration::from_micros(record.pts_micros))))
    }

    /// Reads frames `first…` up to [`SEGMENT_FRAMES`] or [`SEGMENT_BYTES`].
    fn read_segment(&self, first: usize) -> Result<Segment, String> {
        // Frames lie back to back (checked by `Entry::open`), so a segment is one range of bytes.
        let index = &self.entry.index;
        let base = index[first].offset;
        let end_of = |i: usize| index[i].offset + u64::from(index[i].len);
        let mut end = first + 1;
        while end < index.len() && end - first < SEGMENT_FRAMES && end_of(end) - base <= SEGMENT_BYTES {
            end += 1;
        }
        let mut bytes: Arc<[u8]> = std::iter::repeat_n(0, (end_of(end - 1) - base) as usize).collect();
        let buffer = Arc::get_mut(&mut bytes).ok_or("segment shared before it was read")?;
        self.entry.file.read_exact_at(buffer, base).map_err(|e| format!("store read: {e}"))?;
        Ok(Segment { frames: first..end, base, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ciphercast-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, frames: &[Option<Vec<u8>>]) -> u32 {
        let mut writer = EntryWriter::create(path).unwrap();
        for (i, frame) in frames.iter().enumerate() {
            writer.push(frame.as_deref(), Duration::from_millis(40 * i as u64)).unwrap();
        }
        writer.finish(80, 25.0).unwrap()
    }

    #[test]
    fn frames_come_back_as_written_across_segments() {
        let path = dir("round").join(entry_name("abc", 80));
        let frames: Vec<Option<Vec<u8>>> =
            (0..75u8).map(|i| (i != 3).then(|| vec![i; 100 + usize::from(i)])).chain([None, None]).collect();
        assert_eq!(write(&path, &frames), 75, "trailing frames that never decoded are left out");
        verify(&path, 80, &AtomicBool::new(false)).unwrap();
        assert!(verify(&path, 70, &AtomicBool::new(false)).is_err(), "another quality is another entry");
        let entry = Arc::new(Entry::open(&path).unwrap());
        assert_eq!((entry.frames(), entry.fps()), (75, 25.0));
        let mut reader = Reader::new(entry);
        for i in [0u32, 1, 2, 3, 4, 40, 74, 10, 0] {
            let got = reader.frame(i).unwrap();
            match &frames[i as usize] {
                None => assert!(got.is_none(), "frame {i}"),
                Some(bytes) => {
                    let (slice, pts) = got.unwrap();
                    assert_eq!((&*slice, pts), (&bytes[..], Duration::from_millis(40 * u64::from(i))), "frame {i}");
                }
            }
        }
        assert!(reader.frame(75).is_err());
        assert!(!path.with_extension(format!("tmp-{}", std::process::id())).exists());
    }

    #[test]
    fn a_damaged_or_truncated_file_fails_verification() {
        let dir = dir("damaged");
        let path = dir.join(entry_name("abc", 80));
        write(&path, &[Some(vec![1; 5000]), Some(vec![2; 5000])]);
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[2500] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert!(verify(&path, 80, &AtomicBool::new(false)).unwrap_err().contains("digest"));
        fs::write(&path, &good[..good.len() - 10]).unwrap();
        assert!(verify(&path, 80, &AtomicBool::new(false)).is_err());
        assert!(Entry::open(&path).is_err());
        fs::write(&path, b"short").unwrap();
        assert!(verify(&path, 80, &AtomicBool::new(false)).is_err());
    }

    #[test]
    fn an_abandoned_writer_leaves_nothing_under_either_name() {
        let dir = dir("abandoned");
        let path = dir.join(entry_name("abc", 80));
        let mut writer = EntryWriter::create(&path).unwrap();
        writer.push(Some(&[1; 10]), Duration::ZERO).unwrap();
        drop(writer);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }
}
