//! Layer 3 of the protocol: frame I/O over a socket.
//!
//! A TCP stream is split into its two halves (`try_clone`), each owned by a
//! different thread: a [`FrameReader`] for the thread that blocks in `read`,
//! a [`FrameWriter`] for the thread that writes. No lock is shared between
//! reading and writing, so a blocked reader never stops a writer.

use std::io::{self, BufReader, BufWriter, IoSlice, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::frame::{Frame, FrameError, FrameKind, KEPT_CAPACITY, read_frame, read_frame_into};
use super::message::{MessageError, decode, encode};
use super::trace::{self, Direction};

/// Why [`FrameReader::recv`] returned no message.
#[derive(Debug, Error)]
pub enum RecvError {
    /// The byte stream broke: the connection must be closed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A whole frame arrived but held no acceptable message: the stream is
    /// still in step, so the connection may answer and carry on.
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// The reading half: buffered, bounded frame reads.
pub struct FrameReader<R: Read> {
    inner: BufReader<R>,
    /// The last frame [`FrameReader::next_frame`] read; its buffer is reused.
    frame: Frame,
    max_len: u32,
    /// With `--trace`: the peer's label for the trace lines.
    trace: Option<String>,
}

impl<R: Read> FrameReader<R> {
    /// Wraps `inner`, refusing frames longer than `max_len`.
    pub fn new(inner: R, max_len: u32) -> Self {
        Self::with_buffer(inner, max_len, 8 * 1024)
    }

    /// Like [`new`](Self::new), reading up to `capacity` bytes per system
    /// call. A client reads with a large buffer, so that a burst of small
    /// frames (a class joining) takes few calls; the server's handlers, which
    /// mostly wait, keep the small default.
    pub fn with_buffer(inner: R, max_len: u32, capacity: usize) -> Self {
        let frame = Frame { kind: FrameKind::Control, payload: Vec::new() };
        FrameReader { inner: BufReader::with_capacity(capacity, inner), frame, max_len, trace: None }
    }

    /// Prints a trace line for every frame read, labelled with `peer` (`None`: no tracing).
    pub fn traced(mut self, peer: Option<String>) -> Self {
        self.trace = peer;
        self
    }

    /// Changes the frame limit (the server raises it once a client has joined).
    pub fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len;
    }

    /// The wrapped reader, e.g. to change a socket's read timeout.
    pub fn get_mut(&mut self) -> &mut R {
        self.inner.get_mut()
    }

    /// Blocks until one whole frame has arrived.
    pub fn read_frame(&mut self) -> Result<Frame, FrameError> {
        let frame = read_frame(&mut self.inner, self.max_len)?;
        if let Some(peer) = &self.trace {
            trace::frame(Direction::Received, peer, frame.kind, &frame.payload);
        }
        Ok(frame)
    }

    /// Like [`read_frame`](Self::read_frame), but lends the frame instead of
    /// allocating a new one each time.
    pub fn next_frame(&mut self) -> Result<&Frame, FrameError> {
        read_frame_into(&mut self.inner, self.max_len, &mut self.frame)?;
        if let Some(peer) = &self.trace {
            trace::frame(Direction::Received, peer, self.frame.kind, &self.frame.payload);
        }
        Ok(&self.frame)
    }

    /// Blocks until one whole frame has arrived and decodes it as a control message.
    pub fn recv<M: DeserializeOwned>(&mut self) -> Result<M, RecvError> {
        let decoded = decode(self.next_frame()?);
        // The decoded message owns its data: an idle connection must not
        // keep the memory of one large frame while it waits for the next.
        if self.frame.payload.capacity() > KEPT_CAPACITY {
            self.frame.payload = Vec::new();
        }
        Ok(decoded?)
    }
}

/// The writing half: each frame is written whole and flushed.
pub struct FrameWriter<W: Write> {
    inner: BufWriter<W>,
    /// With `--trace`: the peer's label for the trace lines.
    trace: Option<String>,
}

impl<W: Write> FrameWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        FrameWriter { inner: BufWriter::new(inner), trace: None }
    }

    /// Prints a trace line for every frame written, labelled with `peer` (`None`: no tracing).
    pub fn traced(mut self, peer: Option<String>) -> Self {
        self.trace = peer;
        self
    }

    /// Encodes, writes and flushes one control message.
    pub fn send<M: Serialize>(&mut self, message: &M) -> Result<(), FrameError> {
        let bytes = encode(message)?;
        self.write_encoded(&bytes)?;
        self.flush()
    }

    /// Writes one or more already encoded frames (headers included, back to
    /// back) without flushing, so a writer with more frames waiting sends
    /// them in one system call.
    pub fn write_encoded(&mut self, frames: &[u8]) -> Result<(), FrameError> {
        if let Some(peer) = &self.trace {
            let mut rest = frames;
            while let Some(length) = rest.first_chunk::<4>() {
                let (frame, after) = rest.split_at((u32::from_be_bytes(*length) as usize + 4).min(rest.len()));
                trace::encoded(Direction::Sent, peer, frame, &[]);
                rest = after;
            }
        }
        self.inner.write_all(frames)?;
        Ok(())
    }

    /// Writes a frame given in two pieces (headers, then a large body) with
    /// vectored writes, so both usually leave in one system call and the
    /// body is never copied into the buffer. Flushes.
    pub fn write_split(&mut self, head: &[u8], body: &[u8]) -> Result<(), FrameError> {
        if let Some(peer) = &self.trace {
            trace::encoded(Direction::Sent, peer, head, body);
        }
        self.inner.flush()?;
        let socket = self.inner.get_mut();
        let mut slices = [IoSlice::new(head), IoSlice::new(body)];
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match socket.write_vectored(slices) {
                Ok(0) => return Err(FrameError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sends everything buffered.
    pub fn flush(&mut self) -> Result<(), FrameError> {
        self.inner.flush()?;
        Ok(())
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::limits::MAX_FRAME_LEN;

    #[test]
    fn a_reader_keeps_its_buffer_for_small_frames_and_releases_a_large_one() {
        let mut bytes = Vec::new();
        let mut writer = FrameWriter::new(&mut bytes);
        writer.send(&"small").unwrap();
        writer.send(&"x".repeat(4 * KEPT_CAPACITY)).unwrap();
        writer.send(&"small again").unwrap();
        drop(writer);
        let mut reader = FrameReader::new(&bytes[..], MAX_FRAME_LEN);
        assert_eq!(reader.recv::<String>().unwrap(), "small");
        assert_eq!(reader.recv::<String>().unwrap().len(), 4 * KEPT_CAPACITY);
        assert!(reader.frame.payload.capacity() <= KEPT_CAPACITY, "an idle reader holds a large frame's memory");
        assert_eq!(reader.recv::<String>().unwrap(), "small again");
        assert!(matches!(reader.recv::<String>(), Err(RecvError::Frame(FrameError::Closed))));
    }
}
