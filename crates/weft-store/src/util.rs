//! Small helpers shared by the backends: running blocking work off the async
//! runtime, mapping I/O errors, atomic file replacement and name checks.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use weft_core::StoreError;

/// Runs `f(&inner)` on tokio's blocking pool.
pub(crate) async fn blocking<I, T, F>(
    backend: &'static str,
    inner: &Arc<I>,
    f: F,
) -> Result<T, StoreError>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
    F: FnOnce(&I) -> Result<T, StoreError> + Send + 'static,
{
    let inner = inner.clone();
    tokio::task::spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| StoreError::Backend {
            backend,
            message: format!("a blocking store task failed: {e}"),
        })?
}

/// An [`StoreError::Io`] for `path`.
pub(crate) fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
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

/// Replaces `path` with `bytes` atomically (write a temp file beside it,
/// then rename). With `durable`, the temp file and the directory are
/// fsync'd too.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    if durable {
        f.sync_data().at(&tmp)?;
    }
    drop(f);
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
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
