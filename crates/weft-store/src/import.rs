//! Importing sessions written by the Amplifier CLI.
//!
//! Amplifier keeps `~/.amplifier/projects/<slug>/sessions/<id>/` with
//! `transcript.jsonl` (one message a line: `{"role","content",
//! "tool_calls":[{"id","tool","arguments"}],"tool_call_id","timestamp"}`,
//! content a string or a list of blocks) and `metadata.json`
//! (`session_id`, `created`, `bundle` or `profile`, `model`, `turn_count`,
//! `name`, `description`, `working_dir`, and for delegated sessions
//! `parent_id`, `trace_id`, `agent_name`, `config`, `agent_overlay`).
//! Sessions written by weft's fs store have the same shape (see
//! `fs::meta_file`), so a weft home imports too: message ids are kept,
//! the `tool` lines of one message are joined again, and weft's own
//! `metadata` object is kept.
//!
//! [`import_amplifier`] turns each into a weft session with the same id,
//! name, project slug, parent/child links and (through the messages)
//! turn count. The session is created `completed`; its messages are marked
//! `metadata.loaded = true` and keep their timestamps, so the session lists
//! by its last Amplifier activity. Sessions already in the store are
//! skipped and reported; unreadable ones are reported and the rest go on.
//! Within a transcript, a line that cannot be read (not UTF-8, not JSON,
//! not a message) is skipped and counted in [`ImportReport::bad_lines`].

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use weft_core::message::{ContentBlock, META_LOADED, Message, Role};
use weft_core::progress::Progress;
use weft_core::record::{RECORD_VERSION, Record, RecordKind};
use weft_core::session::{
    META_AGENT_CONFIG, META_AGENT_OVERLAY, Project, SessionMeta, SessionStatus, project_slug,
};
use weft_core::store::{DeleteOptions, Store, StoreError};
use weft_core::{BranchId, MessageId, SessionId};

use crate::util::validate_slug;

/// One imported session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportedSession {
    /// Its id (Amplifier's).
    pub id: SessionId,
    /// Messages imported.
    pub messages: usize,
    /// Its turn count after import (user messages).
    pub turns: u64,
    /// Its parent, for delegated sessions.
    pub parent_id: Option<SessionId>,
}

/// A session that could not be imported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportFailure {
    /// Its directory.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// What [`import_amplifier`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    /// Sessions imported.
    pub imported: Vec<ImportedSession>,
    /// Sessions skipped because the store already has them.
    pub skipped: Vec<SessionId>,
    /// Sessions that could not be read or written.
    pub failed: Vec<ImportFailure>,
    /// Transcript lines that could not be read (skipped).
    pub bad_lines: usize,
}

/// Imports Amplifier sessions from `dir` into `store`.
///
/// `dir` may be the Amplifier home (holding `projects/`), a `projects`
/// directory, one project directory (holding `sessions/`), a `sessions`
/// directory, or one session directory. Fails only when `dir` is none of
/// these; per-session problems are in the report.
pub async fn import_amplifier(dir: &Path, store: &dyn Store) -> Result<ImportReport, StoreError> {
    import_amplifier_reporting(dir, store, &weft_core::progress::NoProgress).await
}

/// [`import_amplifier`], telling `progress` how many session directories
/// it found and each one it imports.
pub async fn import_amplifier_reporting(
    dir: &Path,
    store: &dyn Store,
    progress: &dyn Progress,
) -> Result<ImportReport, StoreError> {
    let sessions = discover(dir)?;
    progress.start(sessions.len() as u64);
    let mut report = ImportReport::default();
    for (slug, path) in sessions {
        progress.advance(1);
        match import_one(&slug, &path, store, &mut report).await {
            Ok(()) => {}
            Err(reason) => report.failed.push(ImportFailure { path, reason }),
        }
    }
    Ok(report)
}

fn is_dir(p: &Path) -> bool {
    p.is_dir()
}

fn subdirs(p: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(p).map_err(|e| StoreError::Io {
        path: p.display().to_string(),
        source: e,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if path.is_dir() && !hidden {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_session_dir(p: &Path) -> bool {
    p.join("transcript.jsonl").is_file() || p.join("metadata.json").is_file()
}

/// The session directories under `dir`, with the slug of their project.
fn discover(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let project =
        |project_dir: &Path, out: &mut Vec<(String, PathBuf)>| -> Result<(), StoreError> {
            let slug = name_of(project_dir);
            let sessions = project_dir.join("sessions");
            if is_dir(&sessions) {
                for s in subdirs(&sessions)? {
                    if is_session_dir(&s) {
                        out.push((slug.clone(), s));
                    }
                }
            }
            Ok(())
        };
    if is_dir(&dir.join("projects")) {
        for p in subdirs(&dir.join("projects"))? {
            project(&p, &mut out)?;
        }
    } else if is_dir(&dir.join("sessions")) {
        project(dir, &mut out)?;
    } else if is_session_dir(dir) {
        let slug = dir
            .parent()
            .filter(|p| name_of(p) == "sessions")
            .and_then(Path::parent)
            .map(name_of)
            .unwrap_or_default();
        out.push((slug, dir.to_path_buf()));
    } else if is_dir(dir) {
        let subs = subdirs(dir)?;
        let projects: Vec<&PathBuf> = subs
            .iter()
            .filter(|s| is_dir(&s.join("sessions")))
            .collect();
        if !projects.is_empty() {
            for p in projects {
                project(p, &mut out)?;
            }
        } else {
            let slug = if name_of(dir) == "sessions" {
                dir.parent().map(name_of).unwrap_or_default()
            } else {
                String::new()
            };
            for s in subs {
                if is_session_dir(&s) {
                    out.push((slug.clone(), s));
                }
            }
        }
    }
    if out.is_empty() && !is_dir(dir) {
        return Err(StoreError::Invalid(format!(
            "{} is not an Amplifier directory: give ~/.amplifier, a projects/<slug> directory or a session directory",
            dir.display()
        )));
    }
    Ok(out)
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // Python's isoformat() without a zone: take it as UTC.
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

fn str_field(meta: &Map<String, Value>, key: &str) -> Option<String> {
    meta.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Text of a content value: a string, or the text of a list of blocks.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| match b {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o
                    .get("text")
                    .or_else(|| o.get("content"))
                    .or_else(|| o.get("output"))
                    .map(content_text),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn arguments(v: Option<&Value>) -> Value {
    match v {
        // OpenAI-style arguments are a JSON string.
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(v) => v.clone(),
        None => Value::Object(Map::new()),
    }
}

fn tool_call(v: &Value) -> Option<ContentBlock> {
    let o = v.as_object()?;
    let function = o.get("function").and_then(Value::as_object);
    let id = o
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = o
        .get("tool")
        .or_else(|| o.get("name"))
        .or_else(|| function.and_then(|f| f.get("name")))
        .and_then(Value::as_str)?
        .to_string();
    let args = o
        .get("arguments")
        .or_else(|| o.get("input"))
        .or_else(|| function.and_then(|f| f.get("arguments")));
    Some(ContentBlock::ToolCall {
        id,
        name,
        arguments: arguments(args),
    })
}

/// Converts one Amplifier transcript line.
fn to_message(line: &Value, fallback_ts: DateTime<Utc>) -> Option<Message> {
    let o = line.as_object()?;
    let role = match o.get("role")?.as_str()? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        "system" | "developer" => Role::System,
        _ => return None,
    };
    let content = o.get("content").unwrap_or(&Value::Null);
    let mut blocks = Vec::new();
    match role {
        Role::Tool => {
            let call_id = o
                .get("tool_call_id")
                .or_else(|| o.get("tool_use_id"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            blocks.push(ContentBlock::ToolResult {
                call_id,
                output: content_text(content),
                is_error: o.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            });
        }
        _ => {
            match content {
                Value::Array(items) => {
                    for item in items {
                        let kind = item.get("type").and_then(Value::as_str).unwrap_or("text");
                        match kind {
                            "thinking" => blocks.push(ContentBlock::Thinking {
                                thinking: item
                                    .get("thinking")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string(),
                                signature: item
                                    .get("signature")
                                    .and_then(Value::as_str)
                                    .map(str::to_string),
                            }),
                            "tool_call" | "tool_use" => {
                                if let Some(b) = tool_call(item) {
                                    blocks.push(b);
                                }
                            }
                            "tool_result" => blocks.push(ContentBlock::ToolResult {
                                call_id: item
                                    .get("tool_call_id")
                                    .or_else(|| item.get("tool_use_id"))
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string(),
                                output: content_text(
                                    item.get("content")
                                        .or_else(|| item.get("output"))
                                        .unwrap_or(&Value::Null),
                                ),
                                is_error: item
                                    .get("is_error")
                                    .and_then(Value::as_bool)
                                    .unwrap_or(false),
                            }),
                            "image" => {}
                            _ => {
                                let text = content_text(&Value::Array(vec![item.clone()]));
                                if !text.is_empty() {
                                    blocks.push(ContentBlock::text(text));
                                }
                            }
                        }
                    }
                }
                other => {
                    let text = content_text(other);
                    if !text.is_empty() {
                        blocks.push(ContentBlock::text(text));
                    }
                }
            }
            if let Some(Value::Array(calls)) = o.get("tool_calls") {
                blocks.extend(calls.iter().filter_map(tool_call));
            }
        }
    }
    let mut m = Message::new(BranchId::main(), role, blocks);
    if let Some(id) = o
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| MessageId::parse(s).ok())
    {
        m.id = id;
    }
    m.timestamp = parse_time(o.get("timestamp")).unwrap_or(fallback_ts);
    m.metadata.insert(META_LOADED.into(), Value::Bool(true));
    Some(m)
}

/// Adds `m` to `messages`, joining it to the previous message when both
/// are tool results with the same id (weft writes one `tool` line per
/// result of a message, all with the message's id).
fn push_message(messages: &mut Vec<Message>, m: Message) {
    if m.role == Role::Tool
        && let Some(last) = messages.last_mut()
        && last.role == Role::Tool
        && last.id == m.id
    {
        last.content.extend(m.content);
        return;
    }
    messages.push(m);
}

async fn import_one(
    dir_slug: &str,
    path: &Path,
    store: &dyn Store,
    report: &mut ImportReport,
) -> Result<(), String> {
    let meta_json: Map<String, Value> = match std::fs::read(path.join("metadata.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("metadata.json is not a JSON object: {e}"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(format!("cannot read metadata.json: {e}")),
    };
    let raw_id = str_field(&meta_json, "session_id").unwrap_or_else(|| name_of(path));
    let id = SessionId::parse(raw_id.as_str()).map_err(|e| e.to_string())?;
    match store.get(&id).await {
        Ok(_) => {
            report.skipped.push(id);
            return Ok(());
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.to_string()),
    }

    let created = parse_time(meta_json.get("created"))
        .or_else(|| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .map(DateTime::<Utc>::from)
        })
        .unwrap_or_else(Utc::now);

    // Messages.
    let mut messages = Vec::new();
    // Bytes, split into lines and decoded one by one: a line that is not
    // UTF-8 (or not a message) is counted in `bad_lines` and skipped, never
    // the whole session.
    match std::fs::read(path.join("transcript.jsonl")) {
        Ok(bytes) => {
            let lines = bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.trim_ascii().is_empty());
            for line in lines {
                match serde_json::from_slice::<Value>(line)
                    .ok()
                    .and_then(|v| to_message(&v, created))
                {
                    Some(m) => push_message(&mut messages, m),
                    None => report.bad_lines += 1,
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read transcript.jsonl: {e}")),
    }

    // Metadata.
    let working_dir = str_field(&meta_json, "working_dir");
    let slug = if validate_slug(dir_slug).is_ok() {
        dir_slug.to_string()
    } else {
        working_dir
            .as_deref()
            .map(project_slug)
            .unwrap_or_else(|| "-imported".to_string())
    };
    validate_slug(&slug).map_err(|e| e.to_string())?;
    let project = Project {
        dir: working_dir.clone().unwrap_or_else(|| slug.clone()),
        slug,
    };
    let bundle = str_field(&meta_json, "bundle").or_else(|| str_field(&meta_json, "profile"));
    let profile = bundle
        .as_deref()
        .map(|b| b.strip_prefix("bundle:").unwrap_or(b).to_string())
        .unwrap_or_else(|| "amplifier".to_string());
    let mut meta = SessionMeta::new(id.clone(), project, profile);
    meta.created_at = created;
    meta.updated_at = created;
    meta.started_at = Some(created);
    meta.status = SessionStatus::Completed;
    let last_ts = messages
        .iter()
        .map(|m| m.timestamp)
        .max()
        .or_else(|| parse_time(meta_json.get("updated")))
        .unwrap_or(created);
    meta.ended_at = Some(last_ts);
    meta.name = str_field(&meta_json, "name");
    meta.description = str_field(&meta_json, "description");
    meta.model = str_field(&meta_json, "model").filter(|m| m != "unknown");
    meta.agent_name = str_field(&meta_json, "agent_name");
    if let Some(parent) = str_field(&meta_json, "parent_id") {
        meta.parent_id = Some(SessionId::parse(parent).map_err(|e| format!("parent_id: {e}"))?);
    }
    meta.trace_id = match str_field(&meta_json, "trace_id").map(SessionId::parse) {
        Some(Ok(t)) => t,
        _ => meta.parent_id.clone().unwrap_or_else(|| id.clone()),
    };
    let mut amplifier = Map::new();
    amplifier.insert("source".into(), json!(path.display().to_string()));
    for key in ["bundle", "profile", "turn_count", "created", "working_dir"] {
        if let Some(v) = meta_json.get(key) {
            amplifier.insert(key.into(), v.clone());
        }
    }
    // What weft itself keeps in `metadata` (a session written by weft),
    // and a sub-session's plan as Amplifier records it.
    if let Some(Value::Object(own)) = meta_json.get("metadata") {
        meta.metadata.extend(own.clone());
    }
    for key in [META_AGENT_CONFIG, META_AGENT_OVERLAY] {
        if let Some(v) = meta_json.get(key).filter(|v| !v.is_null()) {
            meta.metadata.insert(key.into(), v.clone());
        }
    }
    meta.metadata
        .insert("amplifier".into(), Value::Object(amplifier));

    // Write: the session, then its messages with their own timestamps.
    let created_meta = store
        .create(meta, Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    let count = messages.len();
    let mut final_meta = created_meta;
    if !messages.is_empty() {
        let records: Vec<Record> = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| Record {
                v: RECORD_VERSION,
                seq: 2 + i as u64,
                ts: m.timestamp,
                turn: None,
                branch: None,
                kind: RecordKind::message(m),
            })
            .collect();
        match store.append(&id, 1, records).await {
            Ok(m) => final_meta = m,
            Err(e) => {
                let _ = store.delete(&id, DeleteOptions::default()).await;
                return Err(format!("cannot write the messages: {e}"));
            }
        }
    }
    report.imported.push(ImportedSession {
        id,
        messages: count,
        turns: final_meta.turn_count,
        parent_id: final_meta.parent_id,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_line_shapes() {
        let ts = Utc::now();
        let a = to_message(
            &json!({"role":"assistant","content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"ok"}],
                    "tool_calls":[{"id":"c1","tool":"bash","arguments":{"cmd":"ls"}},
                                  {"id":"c2","type":"function","function":{"name":"read","arguments":"{\"p\":1}"}}]}),
            ts,
        )
        .unwrap();
        assert_eq!(a.text_content(), "ok");
        let calls = a.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].2, &json!({"p": 1}));
        assert!(a.flag(META_LOADED));
        let t = to_message(
            &json!({"role":"tool","tool_call_id":"c1","content":"out"}),
            ts,
        )
        .unwrap();
        assert_eq!(t.tool_result_ids(), vec!["c1"]);
        assert!(to_message(&json!({"role":"robot"}), ts).is_none());
        assert_eq!(
            parse_time(Some(&json!("2025-01-31T12:00:00.123456"))).map(|t| t.timestamp()),
            Some(1738324800)
        );
    }
}
