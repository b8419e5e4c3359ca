//! The `tool-filesystem` module: `read_file`, `write_file`, `edit_file`.
//!
//! - `read_file` shows a text file with line numbers (like `cat -n`), from
//!   an optional 1-based `offset`, at most `limit` lines (default
//!   [`DEFAULT_READ_LINES`]); long lines are cut at [`MAX_LINE_CHARS`] and
//!   the whole output at [`MAX_READ_CHARS`], with a note saying which
//!   `offset` reads on. Binary files (a NUL byte in the first 8 KiB) and
//!   non-regular files are refused. Reads outside the working directory
//!   are allowed or asked about as the embedder's [`ToolAccess`] says;
//!   weft's own home is never read (nor written).
//! - `write_file` writes a whole file atomically (a temporary file in the
//!   same directory, fsynced, then renamed over the target), creating
//!   missing parent directories and keeping an existing file's permissions.
//! - `edit_file` replaces an exact `old_string` with `new_string`; it fails
//!   when the text is not found, or found more than once without
//!   `replace_all`, saying what to do instead. Files with CRLF line endings
//!   are matched when the model sends LF.
//!
//! Writes and edits are refused outside the working directory (resolved
//! physically, so symlinks cannot escape it) unless the module config says
//! `allow_outside_workdir: true`:
//!
//! ```yaml
//! tools:
//!   - { module: tool-filesystem, config: { allow_outside_workdir: true } }
//! ```

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_core::tool::{Tool, ToolContext, ToolOutput};

use crate::access::ToolAccess;
use crate::args::Args;
use crate::paths;
use crate::util::{plural, run_blocking, truncate_chars};

/// Lines `read_file` shows when no `limit` is given.
pub const DEFAULT_READ_LINES: u64 = 2000;
/// Characters of one line `read_file` shows before cutting it.
pub const MAX_LINE_CHARS: usize = 2000;
/// Characters `read_file` returns at most in one call.
pub const MAX_READ_CHARS: usize = 100_000;
/// Largest file `edit_file` loads, in bytes.
pub const MAX_EDIT_BYTES: u64 = 16 * 1024 * 1024;
/// How much of a file is inspected to decide whether it is binary.
const SNIFF_BYTES: usize = 8192;

/// Settings of the `tool-filesystem` module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Allow `write_file` and `edit_file` outside the working directory
    /// (default `false`).
    pub allow_outside_workdir: bool,
}

/// The tools of `tool-filesystem`, sharing one config.
/// `access` says which paths are protected and how reads outside the
/// working directory are treated (see [`crate::access`]).
pub fn filesystem_tools(config: FilesystemConfig, access: Arc<ToolAccess>) -> Vec<Arc<dyn Tool>> {
    let config = Arc::new(config);
    vec![
        Arc::new(ReadFile {
            access: access.clone(),
        }),
        Arc::new(WriteFile {
            config: config.clone(),
            access: access.clone(),
        }),
        Arc::new(EditFile { config, access }),
    ]
}

fn io_error(e: &io::Error, shown: &str) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => format!("{shown} does not exist"),
        io::ErrorKind::PermissionDenied => format!("permission denied: {shown}"),
        _ => format!("cannot access {shown}: {e}"),
    }
}

// ---- read_file ----------------------------------------------------------

/// `read_file`: shows a text file with line numbers.
#[derive(Debug, Clone, Default)]
pub struct ReadFile {
    access: Arc<ToolAccess>,
}

impl ReadFile {
    /// A `read_file` tool under `access`.
    pub fn new(access: Arc<ToolAccess>) -> Self {
        Self { access }
    }
}

const READ_DESCRIPTION: &str = "Reads a text file and returns its lines numbered like `cat -n`. \
Relative paths are relative to the working directory. By default it returns up to 2000 lines \
from the start; for long files pass `offset` (the 1-based line to start at) and `limit` (how \
many lines). Lines longer than 2000 characters are cut. Binary files are refused.";

#[async_trait]
impl Tool for ReadFile {
    fn name(&self) -> &str {
        "read_file"
    }

    fn description(&self) -> &str {
        READ_DESCRIPTION
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The file to read (absolute, or relative to the working directory)."},
                "offset": {"type": "integer", "minimum": 1, "description": "The 1-based line number to start at (default 1)."},
                "limit": {"type": "integer", "minimum": 1, "description": "How many lines to return (default 2000)."}
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let parsed = (|| {
            let args = Args::parse("read_file", &input, &["path", "offset", "limit"])?;
            let raw = args.non_empty("path")?;
            let offset = args.opt_u64("offset")?.unwrap_or(1).max(1);
            let limit = match args.opt_u64("limit")? {
                Some(0) => return Err("read_file needs `limit` to be at least 1".to_string()),
                Some(n) => n,
                None => DEFAULT_READ_LINES,
            };
            let path = paths::resolve(raw, &ctx.working_dir)?;
            Ok((path, offset, limit))
        })();
        let (path, offset, limit) = match parsed {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        };
        let shown = paths::display(&path, &ctx.working_dir);
        // Read the physical file that was checked, not the path again (a
        // link swapped in between must not lead somewhere else).
        let path = match self.access.check_read("read_file", &path, ctx).await {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        };
        let cancel = ctx.cancel.clone();
        run_blocking(&ctx.cancel, "read_file", move || {
            read_numbered(&path, &shown, offset, limit, &cancel)
        })
        .await
    }
}

/// Reads up to `n` bytes (fewer at end of file).
fn read_prefix(file: &mut File, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The numbered view of lines `offset .. offset + limit` of a file.
fn read_numbered(
    path: &Path,
    shown: &str,
    offset: u64,
    limit: u64,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let meta = fs::metadata(path).map_err(|e| io_error(&e, shown))?;
    if meta.is_dir() {
        return Err(format!(
            "{shown} is a directory; use glob to list the files in it"
        ));
    }
    if !meta.is_file() {
        return Err(format!(
            "{shown} is not a regular file (a device, socket or pipe); read_file only reads files"
        ));
    }
    let mut file = File::open(path).map_err(|e| io_error(&e, shown))?;
    let head = read_prefix(&mut file, SNIFF_BYTES).map_err(|e| io_error(&e, shown))?;
    if head.contains(&0) {
        return Err(format!(
            "{shown} is a binary file ({} bytes); read_file only reads text",
            meta.len()
        ));
    }
    let mut reader = BufReader::with_capacity(64 * 1024, io::Cursor::new(head).chain(file));

    // Bytes of one line kept for display (enough for MAX_LINE_CHARS chars).
    let keep_bytes = MAX_LINE_CHARS * 4;
    let end = offset.saturating_add(limit);
    let mut out = String::new();
    let mut line: Vec<u8> = Vec::new();
    let mut line_cut = false; // bytes of the current line were not kept
    let mut line_started = false; // the current line has at least one byte
    let mut lineno: u64 = 0; // lines completed so far
    let mut last_shown: u64 = 0;
    let mut full = false;

    let mut finish_line = |line: &mut Vec<u8>, line_cut: &mut bool, lineno: &mut u64| {
        *lineno += 1;
        let n = *lineno;
        if n >= offset && n < end && !full {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let text = String::from_utf8_lossy(line);
            let (cut, truncated) = truncate_chars(&text, MAX_LINE_CHARS);
            let entry = if truncated || *line_cut {
                format!("{n:>6}\t{cut} … [line cut at {MAX_LINE_CHARS} characters]\n")
            } else {
                format!("{n:>6}\t{cut}\n")
            };
            if out.len() + entry.len() > MAX_READ_CHARS && last_shown > 0 {
                full = true;
            } else {
                out.push_str(&entry);
                last_shown = n;
            }
        }
        line.clear();
        *line_cut = false;
    };

    loop {
        if cancel.is_cancelled() {
            return Err("read_file was cancelled".into());
        }
        let chunk = reader.fill_buf().map_err(|e| io_error(&e, shown))?;
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len();
        let mut start = 0;
        while start < len {
            let rest = &chunk[start..];
            let current = lineno + 1;
            let wanted = current >= offset && current < end;
            let (piece, newline) = match rest.iter().position(|&b| b == b'\n') {
                Some(pos) => (&rest[..pos], true),
                None => (rest, false),
            };
            if wanted {
                let take = piece.len().min(keep_bytes.saturating_sub(line.len()));
                line.extend_from_slice(&piece[..take]);
                line_cut |= take < piece.len();
            }
            if newline {
                finish_line(&mut line, &mut line_cut, &mut lineno);
                line_started = false;
                start += piece.len() + 1;
            } else {
                line_started |= !piece.is_empty();
                start = len;
            }
        }
        reader.consume(len);
    }
    if line_started {
        finish_line(&mut line, &mut line_cut, &mut lineno);
    }
    let total = lineno;

    if total == 0 {
        return Ok(format!("({shown} is empty)"));
    }
    if offset > total {
        return Err(format!(
            "{shown} has {}, so offset {offset} is past its end",
            plural(total as usize, "line", "lines")
        ));
    }
    if last_shown < total {
        out.push_str(&format!(
            "[{shown}: showing lines {offset}-{last_shown} of {total}; call read_file with offset={} to read more]\n",
            last_shown + 1
        ));
    } else if offset > 1 {
        out.push_str(&format!(
            "[{shown}: showing lines {offset}-{last_shown} of {total}]\n"
        ));
    }
    Ok(out)
}

// ---- atomic writes ------------------------------------------------------

/// Writes `bytes` to `target` atomically: a temporary file in the same
/// directory, fsynced, renamed over the target. An existing file's
/// permissions are kept. Returns whether the file is new.
pub(crate) fn atomic_write(target: &Path, bytes: &[u8]) -> io::Result<bool> {
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::other("the path has no parent directory"))?;
    let existing = match fs::metadata(target) {
        Ok(m) => Some(m.permissions()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".weft-tmp");
    {
        use std::os::unix::fs::PermissionsExt;
        // The process umask applies, as for any new file.
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if let Some(perms) = &existing {
        tmp.as_file().set_permissions(perms.clone())?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    // Make the rename durable too (best effort: not every file system
    // supports fsync on a directory).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(existing.is_none())
}

// ---- write_file ---------------------------------------------------------

/// `write_file`: writes a whole file atomically.
#[derive(Debug, Clone, Default)]
pub struct WriteFile {
    config: Arc<FilesystemConfig>,
    access: Arc<ToolAccess>,
}

impl WriteFile {
    /// A `write_file` tool with `config` and unrestricted access (see
    /// [`filesystem_tools`] for one with protected paths).
    pub fn new(config: FilesystemConfig) -> Self {
        Self {
            config: Arc::new(config),
            access: Arc::default(),
        }
    }
}

const WRITE_DESCRIPTION: &str = "Writes a file with the given content, replacing it if it \
exists and creating missing parent directories. Relative paths are relative to the working \
directory; files outside the working directory cannot be written. Prefer edit_file for \
changing part of an existing file, and read a file before overwriting it.";

#[async_trait]
impl Tool for WriteFile {
    fn name(&self) -> &str {
        "write_file"
    }

    fn description(&self) -> &str {
        WRITE_DESCRIPTION
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The file to write (absolute, or relative to the working directory)."},
                "content": {"type": "string", "description": "The complete new content of the file."}
            },
            "required": ["path", "content"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let parsed = (|| {
            let args = Args::parse("write_file", &input, &["path", "content"])?;
            let raw = args.non_empty("path")?;
            let content = args.string("content")?.to_string();
            let target =
                paths::resolve_for_write(raw, &ctx.working_dir, self.config.allow_outside_workdir)?;
            Ok::<_, String>((target, content))
        })();
        let (target, content) = match parsed {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        };
        let shown = paths::display(&target, &ctx.working_dir);
        if let Err(e) = self.access.check_write(&target, &shown) {
            return ToolOutput::error(e);
        }
        run_blocking(&ctx.cancel, "write_file", move || {
            write_whole(&target, &shown, &content)
        })
        .await
    }
}

fn write_whole(target: &Path, shown: &str, content: &str) -> Result<String, String> {
    if target.is_dir() {
        return Err(format!(
            "{shown} is a directory; give the path of a file inside it"
        ));
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| {
            format!(
                "cannot create the directory {}: {e}",
                parent.to_string_lossy()
            )
        })?;
    }
    let created = atomic_write(target, content.as_bytes())
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    let lines = content.lines().count();
    Ok(format!(
        "{} {shown} ({}, {})",
        if created { "Created" } else { "Overwrote" },
        plural(content.len(), "byte", "bytes"),
        plural(lines, "line", "lines")
    ))
}

// ---- edit_file ----------------------------------------------------------

/// `edit_file`: replaces exact text in a file.
#[derive(Debug, Clone, Default)]
pub struct EditFile {
    config: Arc<FilesystemConfig>,
    access: Arc<ToolAccess>,
}

impl EditFile {
    /// An `edit_file` tool with `config` and unrestricted access (see
    /// [`filesystem_tools`] for one with protected paths).
    pub fn new(config: FilesystemConfig) -> Self {
        Self {
            config: Arc::new(config),
            access: Arc::default(),
        }
    }
}

const EDIT_DESCRIPTION: &str = "Replaces exact text in a file: `old_string` must match the \
file's text exactly, including whitespace and indentation (copy it from read_file's output \
without the line-number prefix). By default `old_string` must occur exactly once: include \
enough surrounding lines to make it unique, or set `replace_all` to true to replace every \
occurrence. Files outside the working directory cannot be edited.";

/// What an edit is: validated input.
struct EditRequest {
    target: PathBuf,
    shown: String,
    old: String,
    new: String,
    replace_all: bool,
}

#[async_trait]
impl Tool for EditFile {
    fn name(&self) -> &str {
        "edit_file"
    }

    fn description(&self) -> &str {
        EDIT_DESCRIPTION
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The file to edit (absolute, or relative to the working directory)."},
                "old_string": {"type": "string", "description": "The exact text to replace."},
                "new_string": {"type": "string", "description": "The text to put in its place (must differ from old_string)."},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence instead of requiring exactly one (default false)."}
            },
            "required": ["path", "old_string", "new_string"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let parsed = (|| {
            let args = Args::parse(
                "edit_file",
                &input,
                &["path", "old_string", "new_string", "replace_all"],
            )?;
            let raw = args.non_empty("path")?;
            let old = args.string("old_string")?;
            let new = args.string("new_string")?;
            let replace_all = args.flag("replace_all")?;
            if old.is_empty() {
                return Err(
                    "edit_file needs a non-empty `old_string`; to create or replace a whole file use write_file"
                        .to_string(),
                );
            }
            if old == new {
                return Err(
                    "edit_file's `old_string` and `new_string` are identical, so there is nothing to change"
                        .to_string(),
                );
            }
            let target =
                paths::resolve_for_write(raw, &ctx.working_dir, self.config.allow_outside_workdir)?;
            let shown = paths::display(&target, &ctx.working_dir);
            self.access.check_write(&target, &shown)?;
            Ok(EditRequest {
                shown,
                target,
                old: old.to_string(),
                new: new.to_string(),
                replace_all,
            })
        })();
        match parsed {
            Ok(req) => run_blocking(&ctx.cancel, "edit_file", move || apply_edit(&req)).await,
            Err(e) => ToolOutput::error(e),
        }
    }
}

fn apply_edit(req: &EditRequest) -> Result<String, String> {
    let shown = &req.shown;
    let meta = fs::metadata(&req.target).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            format!("{shown} does not exist; use write_file to create a new file")
        }
        _ => io_error(&e, shown),
    })?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() > MAX_EDIT_BYTES {
        return Err(format!(
            "{shown} is too large to edit ({} bytes; the limit is {MAX_EDIT_BYTES})",
            meta.len()
        ));
    }
    let bytes = fs::read(&req.target).map_err(|e| io_error(&e, shown))?;
    let content = String::from_utf8(bytes)
        .map_err(|_| format!("{shown} is not UTF-8 text; edit_file only edits UTF-8 text files"))?;

    let (mut old, mut new) = (req.old.clone(), req.new.clone());
    let mut count = content.matches(old.as_str()).count();
    if count == 0 && content.contains("\r\n") && old.contains('\n') && !old.contains('\r') {
        // The file uses CRLF; the model almost always sends LF.
        old = old.replace('\n', "\r\n");
        new = new.replace('\n', "\r\n");
        count = content.matches(old.as_str()).count();
    }
    if count == 0 {
        let trimmed = req.old.trim();
        let hint = if !trimmed.is_empty() && trimmed != req.old && content.contains(trimmed) {
            " (it does occur with different leading or trailing whitespace)"
        } else {
            ""
        };
        return Err(format!(
            "old_string was not found in {shown}{hint}; read the file and copy the exact text, \
             including whitespace and indentation"
        ));
    }
    if count > 1 && !req.replace_all {
        return Err(format!(
            "old_string occurs {count} times in {shown}; include more surrounding lines to make \
             it unique, or set replace_all to true to replace every occurrence"
        ));
    }
    let first = content.find(old.as_str()).unwrap_or(0);
    let updated = if req.replace_all {
        content.replace(old.as_str(), &new)
    } else {
        content.replacen(old.as_str(), &new, 1)
    };
    atomic_write(&req.target, updated.as_bytes())
        .map_err(|e| format!("cannot write {shown}: {e}"))?;

    let mut out = format!(
        "Edited {shown}: replaced {}.\n",
        plural(count, "occurrence", "occurrences")
    );
    out.push_str(&snippet(&updated, first, new.len()));
    Ok(out)
}

/// Numbered lines around the byte range `start .. start + len` of `text`
/// (a few lines of context, at most 30 lines).
fn snippet(text: &str, start: usize, len: usize) -> String {
    let start = start.min(text.len());
    let end = (start + len).min(text.len());
    let first_line = text.as_bytes()[..start]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let last_line = first_line
        + text.as_bytes()[start..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
    let from = first_line.saturating_sub(3);
    let to = (last_line + 3).min(from + 29);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate().skip(from).take(to + 1 - from) {
        let (cut, truncated) = truncate_chars(line.trim_end_matches('\r'), 400);
        out.push_str(&format!(
            "{:>6}\t{cut}{}\n",
            i + 1,
            if truncated { " …" } else { "" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> CancellationToken {
        CancellationToken::new()
    }

    #[test]
    fn reads_windows_and_reports_more() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("f.txt");
        let text: String = (1..=10).map(|i| format!("line {i}\r\n")).collect();
        fs::write(&p, text)?;
        let all = read_numbered(&p, "f.txt", 1, 100, &never())?;
        assert!(all.starts_with("     1\tline 1\n"), "{all}");
        assert!(all.contains("    10\tline 10\n"));
        assert!(!all.contains('['), "{all}");
        let part = read_numbered(&p, "f.txt", 3, 2, &never())?;
        assert_eq!(
            part,
            "     3\tline 3\n     4\tline 4\n[f.txt: showing lines 3-4 of 10; call read_file with offset=5 to read more]\n"
        );
        let err = read_numbered(&p, "f.txt", 11, 2, &never()).err();
        assert!(err.is_some_and(|e| e.contains("past its end")));
        Ok(())
    }

    #[test]
    fn long_lines_are_cut_and_output_is_capped() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("long.txt");
        let mut text = "x".repeat(MAX_LINE_CHARS * 10);
        text.push_str("\nshort\nlast-without-newline");
        fs::write(&p, &text)?;
        let out = read_numbered(&p, "long.txt", 1, 10, &never())?;
        assert!(out.contains("[line cut at 2000 characters]"), "{out}");
        assert!(out.contains("     2\tshort\n"));
        assert!(out.contains("     3\tlast-without-newline\n"));

        let many: String = (0..5000)
            .map(|_| format!("{}\n", "y".repeat(100)))
            .collect();
        fs::write(&p, many)?;
        let out = read_numbered(&p, "long.txt", 1, 5000, &never())?;
        assert!(out.len() <= MAX_READ_CHARS + 200);
        assert!(
            out.contains("of 5000; call read_file with offset="),
            "{}",
            &out[out.len() - 200..]
        );
        Ok(())
    }

    #[test]
    fn refuses_binary_dirs_and_empty_is_said() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let bin = dir.path().join("b.bin");
        fs::write(&bin, [0x89, b'P', b'N', b'G', 0, 1, 2])?;
        let err = read_numbered(&bin, "b.bin", 1, 10, &never()).err();
        assert!(err.is_some_and(|e| e.contains("binary")));
        let err = read_numbered(dir.path(), ".", 1, 10, &never()).err();
        assert!(err.is_some_and(|e| e.contains("directory")));
        let empty = dir.path().join("e.txt");
        fs::write(&empty, "")?;
        assert_eq!(
            read_numbered(&empty, "e.txt", 1, 10, &never())?,
            "(e.txt is empty)"
        );
        Ok(())
    }

    #[test]
    fn atomic_write_keeps_permissions() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("script.sh");
        fs::write(&p, "old")?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o750))?;
        assert!(!atomic_write(&p, b"new")?);
        assert_eq!(fs::read_to_string(&p)?, "new");
        assert_eq!(fs::metadata(&p)?.permissions().mode() & 0o777, 0o750);
        assert!(atomic_write(&dir.path().join("fresh"), b"x")?);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        Ok(())
    }

    #[test]
    fn edit_handles_crlf_and_whitespace_hints() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("w.txt");
        fs::write(&p, "a\r\nb\r\nc\r\n")?;
        let req = |old: &str, new: &str| EditRequest {
            target: p.clone(),
            shown: "w.txt".into(),
            old: old.into(),
            new: new.into(),
            replace_all: false,
        };
        apply_edit(&req("a\nb", "A\nB"))?;
        assert_eq!(fs::read_to_string(&p)?, "A\r\nB\r\nc\r\n");
        let err = apply_edit(&req("  c  ", "d")).err().unwrap_or_default();
        assert!(
            err.contains("different leading or trailing whitespace"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn snippet_shows_context() {
        let text: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let at = text.find("l10").unwrap_or(0);
        let s = snippet(&text, at, 3);
        assert!(s.starts_with("     7\tl7\n"), "{s}");
        assert!(s.ends_with("    13\tl13\n"), "{s}");
    }
}
