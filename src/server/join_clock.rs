//! The socket as a handler thread reads it, with the join's deadline held
//! to every read until the client has joined, and every byte counted.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use super::web::metrics::Traffic;

/// The socket as the handler reads it: before the join, every read is held to
/// the join deadline, so a client trickling one byte every nine seconds is
/// still cut off ten seconds after connecting.
pub(crate) struct JoinClock {
    pub(crate) stream: Arc<TcpStream>,
    pub(crate) deadline: Option<Instant>,
    /// The server's counts: every byte read is one of `bytes_in`.
    pub(crate) traffic: Arc<Traffic>,
}

impl Read for JoinClock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        let n = (&*self.stream).read(buf)?;
        Traffic::add(&self.traffic.bytes_in, n as u64);
        Ok(n)
    }
}
