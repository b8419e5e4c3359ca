//! Private servers for tests and benchmarks (`redis::local`,
//! `dynamodb::local`): a free loopback port, and a child process tied to
//! this one (killed by the kernel when this process exits, even by
//! SIGKILL). Knows nothing about which server it starts.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A free port on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Spawns the command `make` builds and returns its pid. The child gets
/// SIGKILL when the thread that spawned it exits (`PR_SET_PDEATHSIG`), so
/// it is spawned from a thread that lives as long as the process.
pub(crate) fn spawn_tied(make: impl FnOnce() -> Command + Send + 'static) -> Result<u32, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = make();
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                let _ = tx.send(Ok(child.id()));
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
            }
        }
    });
    rx.recv().map_err(|e| e.to_string()).and_then(|r| r)
}
