//! The server under measurement, as a child process of the bench, and what
//! `/proc` says about a process (CPU time, resident memory). Called from the
//! bench's main thread; one small thread per server drains its stderr.
//!
//! Why a child process and not a server thread inside the bench? Because
//! `/proc/PID/stat` and `/proc/PID/status` then count the server's work and
//! memory alone, not the thousand synthetic clients' beside it.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;

/// The server binary (this executable) running on a free loopback port.
/// Dropping it kills the server.
pub(super) struct ServerProcess {
    child: Child,
    /// Where it listens: port 0 let the system choose, and the server's log
    /// line `listening on ADDRESS` tells us which.
    pub(super) address: SocketAddr,
    /// Where its web page listens, when started with `--web`.
    pub(super) web: Option<SocketAddr>,
}

impl ServerProcess {
    /// Starts `ciphercast server` serving `videos`, admitting up to
    /// `max_clients`, and waits until it listens. The server is this
    /// executable, or the one `CIPHERCAST_BENCH_SERVER` names (to compare
    /// two builds of the server with the same clients, in one sitting).
    pub(super) fn start(videos: &Path, max_clients: usize) -> Result<ServerProcess, String> {
        // No store: a phase measures what it names, not a preparation running beside it.
        ServerProcess::start_with(videos, max_clients, &["--store", "none"])
    }

    /// [`start`](Self::start), with more `options` for the server.
    pub(super) fn start_with(videos: &Path, max_clients: usize, options: &[&str]) -> Result<ServerProcess, String> {
        let exe = match std::env::var_os("CIPHERCAST_BENCH_SERVER") {
            Some(exe) => exe.into(),
            None => std::env::current_exe().map_err(|e| e.to_string())?,
        };
        let mut child = Command::new(exe)
            .args(["server", "--bind", "127.0.0.1", "--port", "0", "--max-clients", &max_clients.to_string()])
            .arg("--videos")
            .arg(videos)
            .args(options)
            .env("RUST_LOG", "info/listening on")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let stderr = child.stderr.take().ok_or("no server stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let wants_web = options.contains(&"--web");
        let mut web = None;
        let mut address = None;
        // The main socket's line comes first, then the web page's.
        while address.is_none() || (wants_web && web.is_none()) {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.split("web page listening on http://").nth(1) {
                        web = rest.split('/').next().and_then(|a| a.parse().ok());
                    } else if let Some(rest) = line.split("listening on ").nth(1) {
                        address = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                    }
                }
                _ => {
                    let _ = child.kill();
                    return Err("the server did not start".into());
                }
            }
        }
        let address = address.ok_or("the server did not say where it listens")?;
        // Keep draining its stderr so it never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        Ok(ServerProcess { child, address, web })
    }

    /// The server's process id, for [`cpu_ms`] and [`rss_kib`].
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) of a process, in milliseconds.
pub(super) fn cpu_ms(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 1000.0 / 100.0
}

/// Resident memory of a process, in KiB.
pub(super) fn rss_kib(pid: u32) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
