//! Small helpers shared by the backends: mapping I/O errors (with the fix for a full disk or a read-only
//! file system), no-follow opens, atomic file replacement and the sweep of
//! its stale temp files, name checks, and warning once per process about
//! the same damage.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weft_core::StoreError;

/// What a full disk reads as in every store error (tests and `weft doctor`
/// look for it).
pub(crate) const DISK_FULL: &str = "the disk is full: free some space and retry";

/// What a read-only file system reads as in store errors.
pub(crate) const READ_ONLY_FS: &str =
    "the file system is read-only: remount it read-write or point WEFT_HOME at a writable copy";

/// An [`StoreError::Io`] for `path`. A full disk (`ENOSPC`, `EDQUOT`) and a
/// read-only file system (`EROFS`) get a message that says the fix; the
/// kind stays `StorageFull` / `ReadOnlyFilesystem`.
pub(crate) fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source: explain(source),
    }
}

/// Rewrites the errors users can act on (disk full, read-only file system)
/// into a sentence that says the fix, keeping the OS's words at the end.
pub(crate) fn explain(e: std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            std::io::Error::new(ErrorKind::StorageFull, format!("{DISK_FULL} ({e})"))
        }
        Some(libc::EROFS) => std::io::Error::new(
            ErrorKind::ReadOnlyFilesystem,
            format!("{READ_ONLY_FS} ({e})"),
        ),
        _ => e,
    }
}

/// Open options that refuse to follow a symlink in the last path component
/// (`O_NOFOLLOW`): session files are never written (or read) through a
/// link that could point outside the store.
pub(crate) fn no_follow() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Whether an open failed because the path is a symlink (`O_NOFOLLOW`
/// gives `ELOOP`).
pub(crate) fn is_symlink_refusal(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Adds the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`StoreError::Io`] at `path`.
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| io_err(path, e))
    }
}

/// fsyncs a directory, so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).at(dir)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The temp file name [`write_atomic`] uses for `name` in this process:
/// `.<name>.tmp-<pid>` (`weft doctor` and [`sweep_temp_files`] look for
/// this shape).
pub(crate) fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", std::process::id())
}

/// The writer pid of a temp file name made by [`temp_name`], if `name` is
/// one.
pub(crate) fn temp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, pid) = rest.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

/// Removes a file when dropped, unless disarmed: the temp file of a write
/// that failed part way never outlives it.
struct RemoveOnDrop<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(self.path);
        }
    }
}

/// Replaces `path` with `bytes` atomically (write a temp file beside it,
/// then rename). With `durable`, the temp file and the directory are
/// fsync'd too. The temp file is removed on every error path (a leaked one
/// would hold the space a full disk needs back).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(temp_name(&name));
    let mut guard = RemoveOnDrop {
        path: &tmp,
        armed: false,
    };
    let mut f = no_follow()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .at(&tmp)?;
    guard.armed = true;
    f.write_all(bytes).at(&tmp)?;
    if durable {
        f.sync_data().at(&tmp)?;
    }
    drop(f);
    fs::rename(&tmp, path).at(path)?;
    guard.armed = false;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// How old a temp file of a live process must be before a sweep removes
/// it anyway (no write takes that long; the pid may have been reused).
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// Whether process `pid` exists (`kill(pid, 0)`).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes the stale temp files (`.<name>.tmp-<pid>`) of interrupted
/// atomic writes in `dir`: those whose writer process is gone or that are
/// older than [`STALE_TEMP_AGE`], so a write in flight in another process
/// sharing the home is left alone. Returns how many were removed.
pub(crate) fn sweep_temp_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_pid) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        if old || !pid_alive(pid) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    removed += 1;
                    tracing::warn!(file = %entry.path().display(), "removed the temp file of an interrupted write");
                }
                Err(e) => {
                    tracing::debug!(file = %entry.path().display(), error = %e, "cannot remove a stale temp file")
                }
            }
        }
    }
    removed
}

/// Whether the current process may write in `dir` (`access(W_OK)`, which
/// also sees read-only mounts, even for root).
pub(crate) fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// A file's modification time in nanoseconds since the epoch (0 when
/// unknown).
pub(crate) fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// Checks that a project slug is usable as one directory name.
pub(crate) fn validate_slug(slug: &str) -> Result<(), StoreError> {
    let bad = slug.is_empty()
        || slug.len() > 255
        || slug == "."
        || slug == ".."
        || slug.starts_with('.')
        || slug
            .chars()
            .any(|c| c == '/' || c == '\\' || c == '\0' || c.is_control());
    if bad {
        return Err(StoreError::Invalid(format!(
            "invalid project slug {slug:?}: a slug is one directory name (see weft_core::session::project_slug)"
        )));
    }
    Ok(())
}

/// Converts a `u64` for SQLite (which stores signed 64-bit integers).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Converts a stored SQLite integer back.
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Whether this process sees `what` (a damaged record's or a stray entry's
/// place) for the first time: a backend warns then, and logs later
/// sightings at debug level, so one damaged record read by every step of a
/// command warns once instead of at each read.
pub(crate) fn first_sighting(what: String) -> bool {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(what)
}
