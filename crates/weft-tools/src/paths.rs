//! Path resolution for the file tools.
//!
//! - Relative paths resolve against the session's working directory; `~`
//!   and `~/…` expand to `$HOME`.
//! - Reads may go anywhere the process can read.
//! - Writes are resolved **physically**: the deepest existing ancestor of
//!   the target is canonicalised (following symlinks), and the remaining,
//!   not-yet-existing components are appended lexically (`..` pops). The
//!   result must lie inside the canonical working directory unless the
//!   module allows writing outside it. A symlink inside the project that
//!   points outside therefore cannot be used to escape it, and writing
//!   through a symlink writes its target rather than replacing the link.

use std::path::{Component, Path, PathBuf};

/// The `$HOME` directory, if known.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `working_dir` made absolute (against the process's current directory
/// when it is relative).
pub(crate) fn absolute_dir(working_dir: &Path) -> PathBuf {
    std::path::absolute(working_dir).unwrap_or_else(|_| working_dir.to_path_buf())
}

/// The canonical working directory, or the absolute one when it cannot be
/// canonicalised (it does not exist).
pub(crate) fn canonical_dir(working_dir: &Path) -> PathBuf {
    std::fs::canonicalize(working_dir).unwrap_or_else(|_| absolute_dir(working_dir))
}

/// Resolves a path given by the model against the working directory
/// (`~` expanded), without touching the file system.
pub(crate) fn resolve(raw: &str, working_dir: &Path) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("the path is empty".into());
    }
    if raw.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    let expanded = if raw == "~" {
        home().ok_or("`~` cannot be expanded: HOME is not set")?
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home()
            .ok_or("`~` cannot be expanded: HOME is not set")?
            .join(rest)
    } else {
        PathBuf::from(raw)
    };
    // `a/./b` → `a/b` (a leading or trailing `.` too); `..` is kept.
    Ok(absolute_dir(working_dir)
        .join(expanded)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect())
}

/// The physical location of `path` (absolute): its deepest existing
/// ancestor canonicalised, plus the remaining components applied
/// lexically.
pub(crate) fn physical(path: &Path) -> Result<PathBuf, String> {
    let components: Vec<Component> = path.components().collect();
    for split in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        if !prefix.exists() {
            continue;
        }
        let mut resolved = std::fs::canonicalize(&prefix)
            .map_err(|e| format!("cannot resolve {}: {e}", prefix.display()))?;
        for c in &components[split..] {
            match c {
                Component::Normal(name) => resolved.push(name),
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return Ok(resolved);
    }
    Err(format!(
        "cannot resolve {}: no part of it exists",
        path.display()
    ))
}

/// Resolves a path for writing (see the module docs): the physical target,
/// refused when it lies outside the working directory and
/// `allow_outside_workdir` is false.
pub(crate) fn resolve_for_write(
    raw: &str,
    working_dir: &Path,
    allow_outside_workdir: bool,
) -> Result<PathBuf, String> {
    let path = resolve(raw, working_dir)?;
    let target = physical(&path)?;
    if !allow_outside_workdir {
        let root = canonical_dir(working_dir);
        if !target.starts_with(&root) {
            return Err(format!(
                "refusing to write {}: it is outside the working directory {} (a module config \
                 with allow_outside_workdir: true permits this)",
                target.display(),
                root.display()
            ));
        }
    }
    Ok(target)
}

/// How a path is shown to the model: relative to the working directory
/// when it is inside it (`.` for the directory itself), absolute otherwise.
pub(crate) fn display(path: &Path, working_dir: &Path) -> String {
    for root in [absolute_dir(working_dir), canonical_dir(working_dir)] {
        if let Ok(rel) = path.strip_prefix(&root) {
            return if rel.as_os_str().is_empty() {
                ".".into()
            } else {
                rel.display().to_string()
            };
        }
    }
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_and_absolute() -> Result<(), String> {
        let wd = Path::new("/project");
        assert_eq!(resolve("a/b.txt", wd)?, PathBuf::from("/project/a/b.txt"));
        assert_eq!(resolve("/etc/hosts", wd)?, PathBuf::from("/etc/hosts"));
        assert_eq!(resolve(".", wd)?, PathBuf::from("/project"));
        assert_eq!(resolve("./a/./b", wd)?, PathBuf::from("/project/a/b"));
        assert!(resolve("  ", wd).is_err());
        assert!(resolve("a\0b", wd).is_err());
        Ok(())
    }

    #[test]
    fn write_resolution_stays_inside() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let wd = dir.path();
        let root = std::fs::canonicalize(wd)?;
        assert_eq!(
            resolve_for_write("new/dir/f.txt", wd, false)?,
            root.join("new/dir/f.txt")
        );
        assert_eq!(
            resolve_for_write("new/../f.txt", wd, false)?,
            root.join("f.txt")
        );
        assert!(resolve_for_write("new/../../f.txt", wd, false).is_err());
        assert!(resolve_for_write("/tmp/elsewhere.txt", wd, false).is_err());
        assert!(resolve_for_write("/tmp/elsewhere.txt", wd, true).is_ok());
        Ok(())
    }

    #[test]
    fn symlinks_cannot_escape() -> Result<(), Box<dyn std::error::Error>> {
        let outside = tempfile::tempdir()?;
        let dir = tempfile::tempdir()?;
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link"))?;
        let err = resolve_for_write("link/x.txt", dir.path(), false)
            .err()
            .unwrap_or_default();
        assert!(err.contains("outside the working directory"), "{err}");
        Ok(())
    }

    #[test]
    fn display_is_relative_inside() {
        let wd = Path::new("/project");
        assert_eq!(display(Path::new("/project/a/b"), wd), "a/b");
        assert_eq!(display(Path::new("/project"), wd), ".");
        assert_eq!(display(Path::new("/etc/hosts"), wd), "/etc/hosts");
    }
}
