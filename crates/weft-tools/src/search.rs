//! The `tool-search` module: `glob` and `grep`.
//!
//! Both walk the tree with the `ignore` crate, so `.gitignore`, `.ignore`
//! and `.git/info/exclude` rules are respected (also outside a git
//! repository); hidden files are included, the `.git` directory never is.
//! Results are sorted by path and capped, with a note when the cap cut them.
//! Paths are shown relative to the working directory when they are inside
//! it, so they can be passed straight to `read_file`.
//!
//! - `glob` matches file paths relative to the search directory with
//!   shell-style patterns (`*` stays within one directory, `**` crosses
//!   directories, `{a,b}` alternates, `[ab]` is a class). A pattern's
//!   leading literal directories narrow the walk (`src/**/*.rs` walks only
//!   `src`), and an absolute pattern is allowed.
//! - `grep` searches file contents line by line with a Rust regex
//!   (`regex` crate syntax), optionally only in files matching a
//!   ripgrep-style `glob` (`*.rs` matches at any depth; `!` negates).
//!   Binary files and files over [`MAX_GREP_FILE_BYTES`] are skipped.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use globset::GlobBuilder;
use ignore::WalkBuilder;
use ignore::overrides::OverrideBuilder;
use regex::RegexBuilder;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use weft_core::tool::{Tool, ToolContext, ToolOutput};

use crate::access::ToolAccess;
use crate::args::Args;
use crate::paths;
use crate::util::{plural, run_blocking, truncate_chars};

/// Most paths `glob` lists.
pub const MAX_GLOB_RESULTS: usize = 500;
/// Matches `grep` returns when `max_results` is not given.
pub const DEFAULT_GREP_RESULTS: u64 = 200;
/// The largest `max_results` `grep` honours.
pub const MAX_GREP_RESULTS: u64 = 2000;
/// Characters of a matching line `grep` shows.
pub const MAX_GREP_LINE_CHARS: usize = 300;
/// Characters `grep` returns at most.
pub const MAX_GREP_CHARS: usize = 50_000;
/// Files larger than this are not searched by `grep`.
pub const MAX_GREP_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Directory entries a walk visits before it stops.
pub const MAX_WALK_ENTRIES: usize = 500_000;

/// Settings of the `tool-search` module (none yet; unknown keys are
/// refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {}

/// The tools of `tool-search`, under `access` (protected paths and the
/// read policy, see [`crate::access`]).
pub fn search_tools(_config: SearchConfig, access: Arc<ToolAccess>) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(Glob {
            access: access.clone(),
        }),
        Arc::new(Grep { access }),
    ]
}

/// Where a walk may go: the access rules and the roots symlinks may point
/// into.
#[derive(Clone)]
struct WalkScope {
    access: Arc<ToolAccess>,
    allowed: Arc<Vec<PathBuf>>,
}

/// A walker over `root` with weft's rules (see the module docs); entries
/// `scope` refuses (weft's home, links leading into it or out of the
/// allowed roots) are skipped, directories without being entered.
fn walker(root: &Path, scope: &WalkScope) -> WalkBuilder {
    let scope = scope.clone();
    let mut b = WalkBuilder::new(root);
    b.hidden(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .ignore(true)
        .parents(true)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_path(|a, b| a.cmp(b))
        .filter_entry(move |e| {
            e.file_name() != ".git"
                && scope
                    .access
                    .walk_entry_allowed(e.path(), e.path_is_symlink(), &scope.allowed)
        });
    b
}

/// A shown path as a place in a sentence.
fn place(shown: &str) -> String {
    if shown == "." {
        "the working directory".into()
    } else {
        shown.to_string()
    }
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{', '\\'])
}

// ---- glob ----------------------------------------------------------------

/// `glob`: lists files whose paths match a pattern.
#[derive(Debug, Clone, Default)]
pub struct Glob {
    access: Arc<ToolAccess>,
}

const GLOB_DESCRIPTION: &str = "Finds files by path pattern, e.g. `**/*.rs`, `src/**/*.ts` or \
`*.{json,toml}`. `*` matches within one directory and `**` across directories, so `*.rs` only \
matches files directly in the search directory while `**/*.rs` matches at any depth. Searches \
the working directory unless `path` names another directory. Respects .gitignore; returns up \
to 500 paths sorted by name.";

#[async_trait]
impl Tool for Glob {
    fn name(&self) -> &str {
        "glob"
    }

    fn description(&self) -> &str {
        GLOB_DESCRIPTION
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "The glob pattern, relative to the search directory (e.g. `**/*.rs`)."},
                "path": {"type": "string", "description": "The directory to search (default: the working directory)."}
            },
            "required": ["pattern"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let parsed = (|| {
            let args = Args::parse("glob", &input, &["pattern", "path"])?;
            let pattern = args.non_empty("pattern")?.to_string();
            let root = paths::resolve(args.opt_string("path")?.unwrap_or("."), &ctx.working_dir)?;
            Ok::<_, String>((pattern, root))
        })();
        let (pattern, root) = match parsed {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        };
        let (base, rest) = split_pattern(&pattern);
        let (base, allowed) = match self
            .access
            .check_search("glob", &root.join(base), ctx)
            .await
        {
            Ok(checked) => checked,
            Err(e) => return ToolOutput::error(e),
        };
        let scope = WalkScope {
            access: self.access.clone(),
            allowed: Arc::new(allowed),
        };
        let wd = ctx.working_dir.clone();
        let cancel = ctx.cancel.clone();
        run_blocking(&ctx.cancel, "glob", move || {
            glob_files(&pattern, &rest, &base, &scope, &wd, &cancel)
        })
        .await
    }
}

/// Splits a pattern into its leading literal directories and the rest.
fn split_pattern(pattern: &str) -> (PathBuf, String) {
    let trimmed = pattern.trim();
    let mut base = PathBuf::new();
    if trimmed.starts_with('/') {
        base.push("/");
    }
    let parts: Vec<&str> = trimmed
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let literal = parts.iter().take_while(|p| !has_glob_meta(p)).count();
    // The last component is the file part: keep it in the pattern even when
    // it is literal, so `src/main.rs` is matched rather than walked into.
    let literal = literal.min(parts.len().saturating_sub(1));
    for p in &parts[..literal] {
        base.push(p);
    }
    (base, parts[literal..].join("/"))
}

/// Lists the files under `base` (physical, checked) matching `rest` (the
/// part of `pattern` after its literal directories).
fn glob_files(
    pattern: &str,
    rest: &str,
    base: &Path,
    scope: &WalkScope,
    wd: &Path,
    cancel: &CancellationToken,
) -> Result<String, String> {
    if rest.is_empty() {
        return Err(format!("glob pattern {pattern:?} has no file part"));
    }
    let matcher = GlobBuilder::new(rest)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("invalid glob pattern {pattern:?}: {e}"))?
        .compile_matcher();
    let shown_base = paths::display(base, wd);
    match std::fs::metadata(base) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{shown_base} is not a directory")),
        Err(_) => {
            return Ok(format!(
                "No files match {pattern:?}: {shown_base} does not exist."
            ));
        }
    }

    let mut found: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut visited = 0usize;
    let mut stopped_early = false;
    for entry in walker(base, scope).build() {
        visited += 1;
        if cancel.is_cancelled() {
            return Err("glob was cancelled".into());
        }
        if visited > MAX_WALK_ENTRIES {
            stopped_early = true;
            break;
        }
        let Ok(entry) = entry else { continue };
        let is_file = match entry.file_type() {
            Some(t) if t.is_file() => true,
            Some(t) if t.is_symlink() => entry.path().is_file(),
            _ => false,
        };
        if !is_file {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(base) else {
            continue;
        };
        if matcher.is_match(rel) {
            total += 1;
            if found.len() < MAX_GLOB_RESULTS {
                found.push(paths::display(entry.path(), wd));
            }
        }
    }

    if found.is_empty() {
        let hint = if !rest.contains('/') && !rest.contains("**") {
            format!(
                " (a pattern without `**/` matches only directly in the search directory; try \"**/{rest}\")"
            )
        } else {
            String::new()
        };
        let tail = if stopped_early {
            format!(" (the search stopped after {MAX_WALK_ENTRIES} entries; narrow `path`)")
        } else {
            String::new()
        };
        return Ok(format!(
            "No files match {pattern:?} in {}{hint}{tail}.",
            place(&shown_base)
        ));
    }
    let mut out = found.join("\n");
    out.push('\n');
    if total > found.len() {
        out.push_str(&format!(
            "[showing the first {} of {total} matching files; use a narrower pattern or path]\n",
            found.len()
        ));
    }
    if stopped_early {
        out.push_str(&format!(
            "[the search stopped after visiting {MAX_WALK_ENTRIES} entries; narrow `path` to see everything]\n"
        ));
    }
    Ok(out)
}

// ---- grep ----------------------------------------------------------------

/// `grep`: searches file contents with a regular expression.
#[derive(Debug, Clone, Default)]
pub struct Grep {
    access: Arc<ToolAccess>,
}

const GREP_DESCRIPTION: &str = "Searches file contents for a regular expression (Rust regex \
syntax) and returns matching lines as `path:line: text`, sorted by path. Searches the working \
directory unless `path` names another directory or a file. `glob` limits the files searched \
(e.g. `*.rs` at any depth, `src/**/*.{ts,tsx}`, `!*.lock` to exclude). Respects .gitignore and \
skips binary files. Returns up to `max_results` matches (default 200, at most 2000).";

struct GrepRequest {
    regex: regex::Regex,
    pattern: String,
    root: PathBuf,
    glob: Option<String>,
    max_results: usize,
}

#[async_trait]
impl Tool for Grep {
    fn name(&self) -> &str {
        "grep"
    }

    fn description(&self) -> &str {
        GREP_DESCRIPTION
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "The regular expression to search for."},
                "path": {"type": "string", "description": "The file or directory to search (default: the working directory)."},
                "glob": {"type": "string", "description": "Only search files matching this glob (e.g. `*.rs`; `!` excludes)."},
                "case_insensitive": {"type": "boolean", "description": "Ignore case (default false)."},
                "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_GREP_RESULTS, "description": "The most matching lines to return (default 200)."}
            },
            "required": ["pattern"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let parsed = (|| {
            let args = Args::parse(
                "grep",
                &input,
                &["pattern", "path", "glob", "case_insensitive", "max_results"],
            )?;
            let pattern = args.string("pattern")?;
            if pattern.is_empty() {
                return Err("grep needs a non-empty `pattern`".to_string());
            }
            let regex = RegexBuilder::new(pattern)
                .case_insensitive(args.flag("case_insensitive")?)
                .size_limit(16 * 1024 * 1024)
                .build()
                .map_err(|e| format!("grep's pattern is not a valid regular expression: {e}"))?;
            let root = paths::resolve(args.opt_string("path")?.unwrap_or("."), &ctx.working_dir)?;
            let max_results = match args.opt_u64("max_results")? {
                Some(0) => return Err("grep needs `max_results` to be at least 1".to_string()),
                Some(n) => n.min(MAX_GREP_RESULTS),
                None => DEFAULT_GREP_RESULTS,
            } as usize;
            Ok(GrepRequest {
                regex,
                pattern: pattern.to_string(),
                root,
                glob: args.opt_string("glob")?.map(str::to_string),
                max_results,
            })
        })();
        let mut req = match parsed {
            Ok(r) => r,
            Err(e) => return ToolOutput::error(e),
        };
        let (root, allowed) = match self.access.check_search("grep", &req.root, ctx).await {
            Ok(checked) => checked,
            Err(e) => return ToolOutput::error(e),
        };
        // The physical root that was checked: `..` and symlinks resolved,
        // so results display cleanly too.
        req.root = root;
        let scope = WalkScope {
            access: self.access.clone(),
            allowed: Arc::new(allowed),
        };
        let wd = ctx.working_dir.clone();
        let cancel = ctx.cancel.clone();
        run_blocking(&ctx.cancel, "grep", move || {
            grep_files(&req, &scope, &wd, &cancel)
        })
        .await
    }
}

/// Appends the matching lines of one file; returns false once the result
/// cap is reached.
fn grep_file(
    path: &Path,
    req: &GrepRequest,
    wd: &Path,
    out: &mut Vec<String>,
    chars: &mut usize,
) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return true;
    };
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return true;
    }
    let text = String::from_utf8_lossy(&bytes);
    let shown = paths::display(path, wd);
    for (i, line) in text.lines().enumerate() {
        if !req.regex.is_match(line) {
            continue;
        }
        let (cut, truncated) = truncate_chars(line.trim_end_matches('\r'), MAX_GREP_LINE_CHARS);
        let entry = format!(
            "{shown}:{}: {cut}{}",
            i + 1,
            if truncated { " …" } else { "" }
        );
        if out.len() >= req.max_results || *chars + entry.len() > MAX_GREP_CHARS {
            return false;
        }
        *chars += entry.len() + 1;
        out.push(entry);
    }
    true
}

fn grep_files(
    req: &GrepRequest,
    scope: &WalkScope,
    wd: &Path,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let root = req.root.clone();
    let shown_root = paths::display(&root, wd);
    let meta = std::fs::metadata(&root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown_root} does not exist"),
        _ => format!("cannot access {shown_root}: {e}"),
    })?;
    let mut out: Vec<String> = Vec::new();
    let mut chars = 0usize;
    let mut capped = false;
    let mut stopped_early = false;
    if meta.is_file() {
        if meta.len() > MAX_GREP_FILE_BYTES {
            return Err(format!(
                "{shown_root} is too large to search ({} bytes; the limit is {MAX_GREP_FILE_BYTES})",
                meta.len()
            ));
        }
        capped = !grep_file(&root, req, wd, &mut out, &mut chars);
    } else {
        let mut builder = walker(&root, scope);
        builder.max_filesize(Some(MAX_GREP_FILE_BYTES));
        if let Some(glob) = &req.glob {
            let mut ob = OverrideBuilder::new(&root);
            ob.add(glob)
                .map_err(|e| format!("grep's glob {glob:?} is invalid: {e}"))?;
            let ov = ob
                .build()
                .map_err(|e| format!("grep's glob {glob:?} is invalid: {e}"))?;
            builder.overrides(ov);
        }
        let mut visited = 0usize;
        for entry in builder.build() {
            visited += 1;
            if cancel.is_cancelled() {
                return Err("grep was cancelled".into());
            }
            if visited > MAX_WALK_ENTRIES {
                stopped_early = true;
                break;
            }
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            if !grep_file(entry.path(), req, wd, &mut out, &mut chars) {
                capped = true;
                break;
            }
        }
    }
    if out.is_empty() {
        let filter = req
            .glob
            .as_ref()
            .map(|g| format!(" (files matching {g:?})"))
            .unwrap_or_default();
        return Ok(format!(
            "No matches for /{}/ in {}{filter}.",
            req.pattern,
            place(&shown_root)
        ));
    }
    let mut text = out.join("\n");
    text.push('\n');
    if capped {
        text.push_str(&format!(
            "[stopped after {}; more may exist: narrow the pattern, path or glob, or raise max_results (at most {MAX_GREP_RESULTS})]\n",
            plural(out.len(), "match", "matches")
        ));
    }
    if stopped_early {
        text.push_str(&format!(
            "[the search stopped after visiting {MAX_WALK_ENTRIES} entries; narrow `path` to see everything]\n"
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literal_prefixes() {
        assert_eq!(
            split_pattern("src/**/*.rs"),
            (PathBuf::from("src"), "**/*.rs".to_string())
        );
        assert_eq!(
            split_pattern("./*.rs"),
            (PathBuf::new(), "*.rs".to_string())
        );
        assert_eq!(
            split_pattern("src/main.rs"),
            (PathBuf::from("src"), "main.rs".to_string())
        );
        assert_eq!(
            split_pattern("/abs/dir/*.txt"),
            (PathBuf::from("/abs/dir"), "*.txt".to_string())
        );
        assert_eq!(split_pattern("**"), (PathBuf::new(), "**".to_string()));
    }
}
