//! The frame cache: each (file, frame, quality) is decoded and JPEG-encoded
//! once and shared by every viewer. Used by the streaming threads.
//!
//! Decoding a 1440p frame and encoding it as JPEG costs about 12 ms here; a
//! streaming thread that finds its next frame in the cache does no OpenCV
//! work at all — it clones a reference-counted buffer and queues it. The
//! cache holds at most `--cache-mb` of JPEG bytes and forgets the least
//! recently used frames first. With each frame it keeps the presentation
//! time the decoder gave it, so a frame served from here is shown exactly
//! when a freshly decoded one would be.
//!
//! When several viewers want a frame nobody has encoded yet, the first one
//! encodes it and the others wait for that result instead of all doing the
//! same work (no stampede at the start of a popular video).
//!
//! One lock guards the map; under it there are only map operations — the
//! encoding happens outside it, on the streaming thread that asked. This
//! file knows nothing of video: a frame is a key, some bytes and a time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

/// Identifies one encoded frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FrameKey {
    /// The video file.
    pub(crate) file: Arc<Path>,
    /// Its modification time, so a replaced file is never served stale.
    pub(crate) modified: Option<SystemTime>,
    /// Frame index in the file.
    pub(crate) index: u32,
    /// JPEG quality.
    pub(crate) quality: i32,
}

/// One encoded frame, as the cache holds and hands it out (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    /// The JPEG bytes, shared by every viewer.
    pub(crate) jpeg: Arc<[u8]>,
    /// When the frame is shown, from the start of the video.
    pub(crate) pts: Duration,
}

/// A frame being encoded by one thread while others wait for it.
type Pending = Arc<(Mutex<Option<Option<Encoded>>>, Condvar)>;

enum Slot {
    Ready { frame: Encoded, used: u64 },
    Pending(Pending),
}

#[derive(Default)]
struct State {
    frames: HashMap<FrameKey, Slot>,
    /// Ready frames by last use, oldest first.
    by_use: BTreeMap<u64, FrameKey>,
    clock: u64,
    bytes: usize,
}

/// The shared cache of encoded frames.
pub(crate) struct FrameCache {
    state: Mutex<State>,
    budget: usize,
}

impl FrameCache {
    /// A cache holding at most `budget_bytes` of JPEG data (0: cache nothing).
    pub(crate) fn new(budget_bytes: usize) -> FrameCache {
        FrameCache { state: Mutex::new(State::default()), budget: budget_bytes }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a frame is cached (or being encoded).
    pub(crate) fn contains(&self, key: &FrameKey) -> bool {
        self.lock().frames.contains_key(key)
    }

    /// The encoded frame for `key`: from the cache, from another thread
    /// encoding it right now, or from `encode` (run without the lock).
    pub(crate) fn get_or_encode<E>(
        &self,
        key: &FrameKey,
        encode: impl FnOnce() -> Result<Encoded, E>,
    ) -> Result<Encoded, E> {
        let pending = {
            let mut state = self.lock();
            state.clock += 1;
            let now = state.clock;
            match state.frames.get_mut(key) {
                Some(Slot::Ready { frame, used }) => {
                    let (frame, previous) = (frame.clone(), *used);
                    *used = now;
                    state.by_use.remove(&previous);
                    state.by_use.insert(now, key.clone());
                    return Ok(frame);
                }
                Some(Slot::Pending(pending)) => Some(Arc::clone(pending)),
                None => {
                    if self.budget > 0 {
                        let pending: Pending = Arc::new((Mutex::new(None), Condvar::new()));
                        state.frames.insert(key.clone(), Slot::Pending(pending));
                    }
                    None
                }
            }
        };
        if let Some(pending) = pending {
            // Someone else is encoding this frame: wait for their result.
            let (result, ready) = &*pending;
            let mut result = result.lock().unwrap_or_else(PoisonError::into_inner);
            while result.is_none() {
                result = ready.wait(result).unwrap_or_else(PoisonError::into_inner);
            }
            if let Some(Some(frame)) = result.as_ref() {
                return Ok(frame.clone());
            }
            // Their attempt failed: try ourselves, uncached.
            return encode();
        }
        // Waiters must be released even if encoding panics.
        let encoded = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(encode)) {
            Ok(encoded) => encoded,
            Err(panic) => {
                if self.budget > 0 {
                    self.finish(key, None);
                }
                std::panic::resume_unwind(panic);
            }
        };
        if self.budget > 0 {
            self.finish(key, encoded.as_ref().ok().cloned());
        }
        encoded
    }

    /// Publishes the outcome of an encoding to the cache and to any waiters.
    fn finish(&self, key: &FrameKey, frame: Option<Encoded>) {
        let pending = {
            let mut state = self.lock();
            let pending = match state.frames.remove(key) {
                Some(Slot::Pending(pending)) => Some(pending),
                _ => None,
            };
            if let Some(frame) = &frame
                && frame.jpeg.len() <= self.budget
            {
                state.clock += 1;
                let now = state.clock;
                state.bytes += frame.jpeg.len();
                state.frames.insert(key.clone(), Slot::Ready { frame: frame.clone(), used: now });
                state.by_use.insert(now, key.clone());
                // Forget the least recently used frames until within budget.
                while state.bytes > self.budget {
                    let Some((_, oldest)) = state.by_use.pop_first() else { break };
                    if let Some(Slot::Ready { frame, .. }) = state.frames.remove(&oldest) {
                        state.bytes -= frame.jpeg.len();
                    }
                }
            }
            pending
        };
        if let Some(pending) = pending {
            let (result, ready) = &*pending;
            *result.lock().unwrap_or_else(PoisonError::into_inner) = Some(frame);
            ready.notify_all();
        }
    }

    /// Bytes of JPEG data held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(index: u32) -> FrameKey {
        FrameKey { file: Arc::from(Path::new("v_240p.mp4")), modified: None, index, quality: 80 }
    }

    fn frame(bytes: Vec<u8>) -> Result<Encoded, String> {
        Ok(Encoded { jpeg: bytes.into(), pts: Duration::ZERO })
    }

    #[test]
    fn encodes_each_frame_once_and_evicts_the_least_recently_used() {
        let cache = FrameCache::new(250);
        let encodes = AtomicUsize::new(0);
        let encode = |byte: u8| {
            encodes.fetch_add(1, Ordering::SeqCst);
            frame(vec![byte; 100])
        };
        assert_eq!(cache.get_or_encode(&key(0), || encode(0)).unwrap().jpeg[0], 0);
        assert_eq!(cache.get_or_encode(&key(0), || encode(9)).unwrap().jpeg[0], 0, "served from the cache");
        cache.get_or_encode(&key(1), || encode(1)).unwrap();
        cache.get_or_encode(&key(0), || encode(9)).unwrap(); // 0 is now the most recent
        cache.get_or_encode(&key(2), || encode(2)).unwrap(); // over budget: 1 goes
        assert_eq!(encodes.load(Ordering::SeqCst), 3);
        assert_eq!(cache.bytes(), 200);
        assert_eq!(cache.get_or_encode(&key(0), || encode(9)).unwrap().jpeg[0], 0);
        assert_eq!(cache.get_or_encode(&key(1), || encode(7)).unwrap().jpeg[0], 7, "evicted, so encoded again");
    }

    #[test]
    fn concurrent_viewers_wait_for_one_encoding() {
        let cache = Arc::new(FrameCache::new(1 << 20));
        let encodes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, encodes) = (Arc::clone(&cache), Arc::clone(&encodes));
                std::thread::spawn(move || {
                    cache
                        .get_or_encode(&key(5), || {
                            encodes.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(50));
                            frame(vec![5; 10])
                        })
                        .unwrap()
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(&*thread.join().unwrap().jpeg, &[5; 10]);
        }
        assert_eq!(encodes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_encoding_is_not_cached_and_a_zero_budget_caches_nothing() {
        let cache = FrameCache::new(1000);
        assert!(cache.get_or_encode(&key(0), || Err::<Encoded, _>("broken")).is_err());
        assert_eq!(cache.get_or_encode(&key(0), || frame(vec![1])).unwrap().jpeg[0], 1);
        let none = FrameCache::new(0);
        none.get_or_encode(&key(0), || frame(vec![1])).unwrap();
        assert_eq!(none.get_or_encode(&key(0), || frame(vec![2])).unwrap().jpeg[0], 2);
    }
}
