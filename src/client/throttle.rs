//! `--max-kbps`: a slow link on one machine. The reader thread's reads from
//! the socket go through a token bucket: tokens (bytes) flow in at the
//! chosen rate, each read takes what it gets, and a read that finds the
//! bucket empty waits for it to fill. The socket's receive buffer is shrunk
//! too, so that what the client does not read backs up to the server at
//! once — as on a real slow link — instead of piling up in the kernel.
//!
//! The server sees only a viewer that reads slowly: this is what its
//! adaptive plan ([`crate::server`]'s `adaptive.rs`) steps down for.

use std::io::{self, Read};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// The bucket holds at most this long a burst at the chosen rate.
const BURST: Duration = Duration::from_millis(20);

/// The smallest bucket, in bytes, so that a read is never a trickle.
const MIN_BURST: f64 = 4096.0;

/// The receive buffer asked for holds this long at the chosen rate
/// (Linux doubles what is asked for, for its own bookkeeping)...
const RECEIVE_BUFFER_TIME: Duration = Duration::from_millis(20);

/// ... within these bounds, in bytes. Below the least, a connection over
/// loopback (whose segments are 64 KiB) stalls: the window would never
/// open by a whole segment.
const RECEIVE_BUFFER_BYTES: (usize, usize) = (32 * 1024, 1024 * 1024);

/// The socket the reader thread reads from, at most at the chosen rate.
pub(crate) struct Throttled {
    socket: TcpStream,
    bucket: Option<Box<Bucket>>,
}

struct Bucket {
    /// Bytes per second.
    rate: f64,
    /// Bytes that may be read now.
    tokens: f64,
    capacity: f64,
    filled_at: Instant,
}

impl Throttled {
    /// Reads from `socket` at most at `max_kbps` kbit/s (of 1000 bits), or
    /// as fast as it comes when `None`.
    pub(crate) fn new(socket: TcpStream, max_kbps: Option<u32>) -> Throttled {
        let bucket = max_kbps.map(|kbps| {
            let rate = f64::from(kbps.max(1)) * 1000.0 / 8.0;
            let (least, most) = RECEIVE_BUFFER_BYTES;
            let buffer = ((rate * RECEIVE_BUFFER_TIME.as_secs_f64()) as usize).clamp(least, most);
            shrink_receive_buffer(&socket, buffer);
            let capacity = (rate * BURST.as_secs_f64()).max(MIN_BURST);
            Box::new(Bucket { rate, tokens: capacity, capacity, filled_at: Instant::now() })
        });
        Throttled { socket, bucket }
    }

    pub(crate) fn socket(&self) -> &TcpStream {
        &self.socket
    }
}

impl Read for Throttled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(bucket) = &mut self.bucket else { return self.socket.read(buf) };
        let allowed = bucket.take(buf.len());
        let read = self.socket.read(&mut buf[..allowed])?;
        bucket.tokens -= read as f64;
        Ok(read)
    }
}

impl Bucket {
    /// Waits until some bytes may be read; how many, at most `wanted`.
    fn take(&mut self, wanted: usize) -> usize {
        if wanted == 0 {
            return 0;
        }
        loop {
            let now = Instant::now();
            let earned = now.duration_since(self.filled_at).as_secs_f64() * self.rate;
            (self.tokens, self.filled_at) = ((self.tokens + earned).min(self.capacity), now);
            if self.tokens >= 1.0 {
                return (self.tokens as usize).min(wanted);
            }
            // Sleep until a good part of the bucket is back, not a byte at a time.
            let missing = self.capacity / 4.0 - self.tokens;
            thread::sleep(Duration::from_secs_f64(missing / self.rate));
        }
    }
}

#[cfg(unix)]
fn shrink_receive_buffer(socket: &TcpStream, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt::RcvBuf};
    if let Err(e) = setsockopt(socket, RcvBuf, &bytes) {
        log::debug!("cannot shrink the receive buffer: {e}");
    }
}

#[cfg(not(unix))]
fn shrink_receive_buffer(_socket: &TcpStream, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn reads_everything_sent_whatever_the_rate() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            thread::spawn(move || server.write_all(&sent))
        };
        // 16 000 kbit/s = 2 MB/s: 0.1 s for these bytes, less the first burst.
        let mut throttled = Throttled::new(client, Some(16_000));
        let mut received = vec![0; sent.len()];
        let started = Instant::now();
        throttled.read_exact(&mut received).unwrap();
        let took = started.elapsed();
        writer.join().unwrap().unwrap();
        assert_eq!(received, sent);
        // A lower bound only: a busy machine makes it slower, never faster.
        assert!(took >= Duration::from_millis(70), "200 kB at 2 MB/s in {took:?}");
    }
}
