//! [`LocalRedis`]: a private `redis-server` for tests and benchmarks, with
//! AOF `appendfsync always` (every acknowledged write fsync'd), no RDB
//! snapshots, on a free loopback port. It owns only the server process;
//! it knows nothing about the store's keys.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs `redis-server`.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A running private `redis-server`; killed on drop, and by the kernel when
/// this process exits (a parent-death signal from a thread that lives as
/// long as the process).
#[derive(Debug)]
pub struct LocalRedis {
    port: u16,
    pid: u32,
}

impl LocalRedis {
    /// Starts `binary` (`WEFT_REDIS_SERVER`, else [`REDIS_SERVER`], when
    /// `None`) with its data in `dir`, and waits until it answers `PING`.
    pub fn start(binary: Option<&Path>, dir: &Path) -> Result<Self, String> {
        let binary: PathBuf = match binary {
            Some(b) => b.to_path_buf(),
            None => std::env::var_os("WEFT_REDIS_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(REDIS_SERVER)),
        };
        if !binary.exists() {
            return Err(format!(
                "{} is missing (apt-get install redis-server)",
                binary.display()
            ));
        }
        let port = crate::local_server::free_port()?;
        let dir = dir.to_path_buf();
        let bin = binary.clone();
        let pid = crate::local_server::spawn_tied(move || {
            let mut cmd = Command::new(&bin);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                .args(["--save", ""])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd
        })
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let server = Self { port, pid };
        let start = Instant::now();
        while !ping(port) {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!("redis-server on port {port} did not answer PING"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL (`redis://127.0.0.1:<port>/0`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Whether a server on `port` answers `PING`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}
