//! [`LocalDynamo`]: a private DynamoDB-compatible server for tests and
//! benchmarks — moto's DynamoDB backend (`scripts/moto-dynamodb.py`, run by
//! the Python of the venv `scripts/dynamodb-local install` makes) on a free
//! loopback port. It owns only the server process; it knows nothing about
//! the store's items.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (where `scripts/` and `target/` are).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that has moto: `WEFT_MOTO_PYTHON`, else the venv
/// `target/moto-venv` of the workspace.
pub fn moto_python() -> PathBuf {
    std::env::var_os("WEFT_MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/moto-venv/bin/python"))
}

/// A running private moto server; killed on drop, and by the kernel when
/// this process exits (a parent-death signal from a thread that lives as
/// long as the process).
#[derive(Debug)]
pub struct LocalDynamo {
    port: u16,
    pid: u32,
}

impl LocalDynamo {
    /// Starts the server and waits until it answers HTTP.
    pub fn start() -> Result<Self, String> {
        let python = moto_python();
        let script = workspace().join("scripts/moto-dynamodb.py");
        if !python.exists() {
            return Err(format!(
                "{} is missing: run scripts/dynamodb-local install (it makes a venv with moto, the local DynamoDB server these tests use), or point WEFT_MOTO_PYTHON at a Python that has moto[server]",
                python.display()
            ));
        }
        if !script.exists() {
            return Err(format!("{} is missing", script.display()));
        }
        let port = crate::local_server::free_port()?;
        let (py, sc) = (python.clone(), script.clone());
        let pid = crate::local_server::spawn_tied(move || {
            let mut cmd = Command::new(&py);
            cmd.arg(&sc)
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd
        })
        .map_err(|e| {
            format!(
                "cannot start {} {}: {e}",
                python.display(),
                script.display()
            )
        })?;
        let server = Self { port, pid };
        let start = Instant::now();
        while !answers(port) {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "the moto DynamoDB server on port {port} did not answer within 60 s (is moto[server] installed in {}?)",
                    python.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its endpoint (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A store URL for `table` on it, created on first use
    /// (`dynamodb://127.0.0.1:<port>/<table>?region=us-east-1&create=true`).
    pub fn url(&self, table: &str) -> String {
        format!(
            "dynamodb://127.0.0.1:{}/{table}?region=us-east-1&create=true",
            self.port
        )
    }
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Whether a server on `port` answers an HTTP request.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 16];
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"HTTP/"))
}
