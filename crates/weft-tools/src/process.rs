//! Running a shell command in its own process group, with a timeout,
//! cancellation and a bounded output buffer.
//!
//! The command runs as `bash -c COMMAND` in a new session (`setsid`), so it
//! leads its own process group and has no controlling terminal: a program
//! that tries to prompt on `/dev/tty` fails at once instead of stopping the
//! group forever, and a Ctrl-C in weft's terminal does not reach it
//! (cancellation does, see below). stdout and stderr share one pipe, so the
//! output keeps the order a terminal would show; stdin is `/dev/null`.
//!
//! The whole group is sent `SIGKILL`
//! - when the command finishes (processes it left in the background are
//!   not kept running),
//! - on timeout and on cancellation,
//! - when the future running it is dropped (the orchestrator aborts a tool
//!   that way on an immediate cancel).
//!
//! The group id is the leader's pid, and the group is always killed
//! *before* the leader is reaped (its exit is observed with
//! `waitid(WNOWAIT)`), so the id cannot have been reused by an unrelated
//! process group. A process that escapes the group with its own `setsid`
//! survives; output it writes after the command ends is not waited for
//! longer than [`DRAIN_GRACE`].

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::util::{head_tail, last_chars, truncate_chars};

/// How long output is still read after the command ended or was killed.
pub const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How often the leader's exit is checked.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
    /// It ran out of time and was killed.
    TimedOut,
    /// It was cancelled and killed.
    Cancelled,
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// How it ended.
    pub ending: Ending,
    /// Its combined stdout and stderr, capped.
    pub output: String,
}

/// Bytes of output kept: a head and a tail; the middle is counted only.
struct Capture {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    keep: usize,
    total: u64,
}

impl Capture {
    fn new(keep: usize) -> Self {
        Self {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            keep,
            total: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.head.len() < self.keep {
            let take = bytes.len().min(self.keep - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.keep {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.keep..]);
        } else {
            self.tail.extend(bytes);
            let excess = self.tail.len().saturating_sub(self.keep);
            self.tail.drain(..excess);
        }
    }

    /// The text, at most about `max_chars` characters: head and tail
    /// around a marker saying how much was left out.
    fn finish(self, max_chars: usize) -> String {
        let kept = self.head.len() as u64 + self.tail.len() as u64;
        if kept == self.total {
            let mut all = self.head;
            all.extend(self.tail);
            return head_tail(&String::from_utf8_lossy(&all), max_chars);
        }
        let head = String::from_utf8_lossy(&self.head).into_owned();
        let tail: Vec<u8> = self.tail.into_iter().collect();
        // Do not start the tail in the middle of a UTF-8 sequence.
        let skip = tail
            .iter()
            .take(3)
            .take_while(|&&b| b & 0xC0 == 0x80)
            .count();
        let tail = String::from_utf8_lossy(&tail[skip..]).into_owned();
        let head = truncate_chars(&head, max_chars / 2).0;
        let tail = last_chars(&tail, max_chars - max_chars / 2);
        let omitted = self
            .total
            .saturating_sub(head.len() as u64 + tail.len() as u64);
        format!("{head}\n[… {omitted} bytes of output omitted …]\n{tail}")
    }
}

/// `kill(-pgid, SIGKILL)`; errors (the group is already gone) are ignored.
fn kill_group(pgid: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative
        // pid addresses the process group `pgid`, which is ours.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn siginfo_pid(info: &libc::siginfo_t) -> libc::pid_t {
    // SAFETY: waitid filled a SIGCHLD-style siginfo (or left it zeroed),
    // for which the si_pid union member is the valid one.
    unsafe { info.si_pid() }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn siginfo_pid(info: &libc::siginfo_t) -> libc::pid_t {
    info.si_pid
}

/// Whether the child `pid` has exited, without reaping it.
fn has_exited(pid: i32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the
    // child waitable, so tokio's Child still reaps it later.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        // ECHILD: it is not our child any more (already reaped).
        return io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
    }
    siginfo_pid(&info) != 0
}

/// A running command; kills its process group when dropped unfinished.
struct Running {
    child: Child,
    pgid: i32,
    reaped: bool,
}

impl Running {
    /// Kills the group (the leader is not reaped yet, so the id is still
    /// ours), then reaps the leader.
    async fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        kill_group(self.pgid);
        let status = self.child.wait().await;
        self.reaped = true;
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            kill_group(self.pgid);
        }
    }
}

fn spawn(command: &str, working_dir: &Path, write_end: OwnedFd) -> io::Result<Child> {
    let stderr = write_end.try_clone()?;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(command)
        .current_dir(working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(stderr))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("PAGER", "cat")
        .env("GIT_PAGER", "cat")
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // `cmd` (and with it the parent's copies of the write end) is dropped
    // when this returns, so the pipe reports end-of-file once every
    // process of the command has closed it.
    cmd.spawn()
}

/// Reads whatever the pipe still delivers until end-of-file or `grace`.
async fn drain(reader: &mut pipe::Receiver, capture: &mut Capture, grace: Duration) {
    let deadline = Instant::now() + grace;
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        capture.push(&buf[..n]);
    }
}

fn ending_of(status: io::Result<ExitStatus>) -> Ending {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(sig)) => Ending::Signaled(sig),
            (None, None) => Ending::Exited(-1),
        },
        Err(_) => Ending::Exited(-1),
    }
}

/// Runs `command` with `bash -c` in `working_dir` (see the module docs).
/// Errors only when the command cannot be started.
pub(crate) async fn run(
    command: &str,
    working_dir: &Path,
    timeout: Duration,
    max_output_chars: usize,
    cancel: &CancellationToken,
) -> io::Result<Finished> {
    let (sender, mut reader) = pipe::pipe()?;
    let child = spawn(command, working_dir, sender.into_blocking_fd()?)?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| io::Error::other("the shell exited before it could be watched"))?;
    let mut running = Running {
        child,
        pgid,
        reaped: false,
    };
    let mut capture = Capture::new(max_output_chars.saturating_mul(2).max(1024));
    let mut buf = vec![0u8; 16 * 1024];
    let now = Instant::now();
    let deadline = now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
    let mut tick = tokio::time::interval(EXIT_POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut eof = false;

    enum Stop {
        Exited,
        TimedOut,
        Cancelled,
    }
    let stop = loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break Stop::Cancelled,
            _ = tokio::time::sleep_until(deadline) => break Stop::TimedOut,
            // Before the read, so a stream of output cannot starve it.
            _ = tick.tick() => {
                if has_exited(pgid) {
                    break Stop::Exited;
                }
            }
            read = reader.read(&mut buf), if !eof => match read {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => capture.push(&buf[..n]),
            },
        }
    };
    let status = running.kill_and_reap().await;
    if !eof {
        drain(&mut reader, &mut capture, DRAIN_GRACE).await;
    }
    let ending = match stop {
        Stop::Exited => ending_of(status),
        Stop::TimedOut => Ending::TimedOut,
        Stop::Cancelled => Ending::Cancelled,
    };
    Ok(Finished {
        ending,
        output: capture.finish(max_output_chars),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut c = Capture::new(10);
        for _ in 0..100 {
            c.push(b"0123456789");
        }
        c.push(b"END");
        let text = c.finish(10);
        assert!(text.starts_with("01234\n[… "), "{text}");
        assert!(text.ends_with("\n89END"), "{text}");
        assert!(text.contains("993 bytes of output omitted"), "{text}");

        let mut small = Capture::new(100);
        small.push(b"hello ");
        small.push(b"world");
        assert_eq!(small.finish(100), "hello world");
    }

    #[tokio::test]
    async fn runs_and_reports_exit_codes() -> io::Result<()> {
        let dir = std::env::temp_dir();
        let never = CancellationToken::new();
        let done = run(
            "echo out; echo err >&2; exit 3",
            &dir,
            Duration::from_secs(10),
            1000,
            &never,
        )
        .await?;
        assert_eq!(done.ending, Ending::Exited(3));
        assert_eq!(done.output, "out\nerr\n");
        let killed = run("kill -TERM $$", &dir, Duration::from_secs(10), 1000, &never).await?;
        assert_eq!(killed.ending, Ending::Signaled(libc::SIGTERM));
        Ok(())
    }

    #[tokio::test]
    async fn background_leftovers_do_not_block() -> io::Result<()> {
        let dir = std::env::temp_dir();
        let never = CancellationToken::new();
        let started = Instant::now();
        let done = run(
            "sleep 30 & echo started",
            &dir,
            Duration::from_secs(20),
            1000,
            &never,
        )
        .await?;
        assert_eq!(done.ending, Ending::Exited(0));
        assert_eq!(done.output, "started\n");
        assert!(started.elapsed() < Duration::from_secs(5));
        Ok(())
    }
}
