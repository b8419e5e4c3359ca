//! `transcript.jsonl`: the default branch's conversation in the Amplifier
//! CLI's line shape, for tools that read Amplifier sessions.
//!
//! ```json
//! {"role":"user","content":"hi","timestamp":"…"}
//! {"role":"assistant","content":"…","tool_calls":[{"id":"c1","tool":"read","arguments":{…}}],"timestamp":"…"}
//! {"role":"tool","tool_call_id":"c1","content":"…","timestamp":"…"}
//! ```
//!
//! Each line also carries `seq`, the log record it comes from, and `id`,
//! the message's id (Amplifier's readers ignore unknown keys; weft's
//! importer keeps the ids, joining the `tool` lines of one message).
//! System messages are left out (as Amplifier does). The file is derived
//! from `log.jsonl` and is not fsync'd. It is brought up to date off the
//! append path, by the store's background worker (see `derived`), within
//! a few tens of milliseconds of an append, when the store closes, or when
//! [`FsStore::flush_derived`](super::FsStore::flush_derived) asks: the
//! worker reads the `seq` of the transcript's last line and adds the lines
//! of the records after it (the log being ahead after a crash, or after
//! another process's appends, is the same case), and a rewind or a change
//! of the default branch rewrites the file from the log.
//! Tool results become one `tool` line each (`"is_error": true` on a
//! failed one); a message's text blocks are joined into `content`.
//!
//! # Repair
//!
//! The transcript never gates the log: it is brought up to date *after* the
//! log append, and a failure (a full disk) is only logged; the next append
//! (or the next open, for a session whose writer died) repairs it. A failed append cuts the file back to where it was; a torn
//! last line found later (a crash, another process's failed write) is cut
//! off and the missing lines appended, so repairing costs the missing lines,
//! not a rewrite of the whole file. Only an unreadable last line, a rewind
//! or a default-branch switch rewrite the file (temp file + rename, the temp
//! file removed when the write fails).

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::sync::atomic::AtomicU64;

use serde_json::{Map, Value, json};
use weft_core::message::{ContentBlock, Message, Role};
use weft_core::record::RecordKind;
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;
use weft_core::view::SessionView;

use super::log::{self, BackLines};
use super::session::read_range;
use super::{LOG_FILE, TRANSCRIPT_FILE};
use crate::codec;
use crate::util::{IoContext, io_err, no_follow, sweep_temp_files, write_atomic};

/// Where `transcript.jsonl` stands.
enum Progress {
    /// Its last line comes from this log seq (0: empty or missing).
    Seq(u64),
    /// Its last line is torn (no newline); it starts at this offset.
    Torn(u64),
    /// Its last complete line is unreadable.
    Unreadable,
}

/// The log a transcript is brought up to: its open file, the fold at its
/// head and the length of its committed records.
pub(super) struct LogAt<'a> {
    /// The session log, open for reading.
    pub(super) file: &'a File,
    /// The metadata folded up to `valid_len`.
    pub(super) meta: &'a SessionMeta,
    /// The length of the log's committed records.
    pub(super) valid_len: u64,
    /// Whether nothing was appended after `valid_len` (a transcript ahead
    /// of it, or unreadable, is then rewritten; otherwise a newer writer
    /// brings it up to date).
    pub(super) current: bool,
}

/// Where `transcript.jsonl` in `dir` stands (see [`Progress`]).
fn progress(dir: &Path, counter: &AtomicU64) -> Result<Progress, StoreError> {
    let path = dir.join(TRANSCRIPT_FILE);
    let file = match no_follow().read(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Progress::Seq(0)),
        Err(e) => return Err(io_err(&path, e)),
    };
    let len = file.metadata().at(&path)?.len();
    let mut lines = BackLines::new(&file, len, counter);
    let Some(line) = lines.next_line().at(&path)? else {
        return Ok(Progress::Seq(0));
    };
    if !line.complete {
        return Ok(Progress::Torn(line.start));
    }
    Ok(serde_json::from_slice::<Value>(&line.bytes)
        .ok()
        .and_then(|v| v.get("seq").and_then(Value::as_u64))
        .map_or(Progress::Unreadable, Progress::Seq))
}

/// Makes `transcript.jsonl` in `dir` reflect `log` (the caller holds the
/// session lock): cuts off a torn last line, then appends the missing
/// lines, or rewrites the file when its last line is unreadable or the
/// missing records rewind or switch the default branch. A transcript
/// already past `log`'s head is left alone unless `log` is current.
pub(super) fn catch_up(dir: &Path, log: &LogAt<'_>, counter: &AtomicU64) -> Result<(), StoreError> {
    let head = log.meta.last_seq;
    let mut at = progress(dir, counter)?;
    if let Progress::Torn(start) = at {
        // A failed write was here: an older weft may also have left the
        // temp file of a failed rewrite holding the disk's space.
        sweep_temp_files(dir);
        let path = dir.join(TRANSCRIPT_FILE);
        tracing::warn!(file = %path.display(), offset = start, "cutting off a torn last line of transcript.jsonl");
        no_follow()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(start))
            .at(&path)?;
        at = progress(dir, counter)?;
    }
    let done = match at {
        Progress::Seq(t) if t <= head => t,
        _ if !log.current => return Ok(()),
        _ => return rewrite(dir, log, counter),
    };
    if done == head {
        return Ok(());
    }
    let log_path = dir.join(LOG_FILE);
    let start = log::seek_seq(log.file, log.valid_len, done + 1, counter).at(&log_path)?;
    let bytes = read_range(log.file, start, log.valid_len, &log_path, counter)?;
    let mut missing = Vec::new();
    codec::decode_lines(
        &bytes,
        start,
        done + 1,
        usize::MAX,
        &log_path.display().to_string(),
        &mut missing,
    );
    let default = &log.meta.default_branch;
    let rewinds = missing.iter().any(|r| match &r.kind {
        RecordKind::Rewind { branch, .. } | RecordKind::BranchRemoved { branch, .. } => {
            branch == default
        }
        RecordKind::DefaultBranch { .. } => true,
        _ => false,
    });
    if rewinds {
        return rewrite(dir, log, counter);
    }
    let mut lines = Vec::new();
    for r in &missing {
        if let Some(m) = r.as_message()
            && &m.branch == default
        {
            message_lines(m, r.seq, &mut lines);
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    let path = dir.join(TRANSCRIPT_FILE);
    let mut out = no_follow()
        .create(true)
        .append(true)
        .open(&path)
        .at(&path)?;
    let before = out.metadata().at(&path)?.len();
    if let Err(e) = out.write_all(&lines) {
        // Leave no torn line behind (the next catch-up adds them again).
        let _ = out.set_len(before);
        return Err(io_err(&path, e));
    }
    Ok(())
}

/// Rewrites `transcript.jsonl` from the log.
fn rewrite(dir: &Path, log: &LogAt<'_>, counter: &AtomicU64) -> Result<(), StoreError> {
    let log_path = dir.join(LOG_FILE);
    let bytes = read_range(log.file, 0, log.valid_len, &log_path, counter)?;
    let records = codec::decode_all(&bytes, 0, &log_path.display().to_string());
    let view = SessionView::from_records(&records)?;
    let mut lines = Vec::new();
    if let Some(b) = view.default_branch() {
        for m in &b.messages {
            message_lines(&m.message, m.seq, &mut lines);
        }
    }
    write_atomic(&dir.join(TRANSCRIPT_FILE), &lines, false)
}

/// Appends the transcript lines of `message` (log record `seq`) to `out`.
pub(crate) fn message_lines(message: &Message, seq: u64, out: &mut Vec<u8>) {
    let ts = Value::String(message.timestamp.to_rfc3339());
    let id = Value::String(message.id.to_string());
    let mut push = |v: Value| {
        // Serialising a Value cannot fail.
        if serde_json::to_writer(&mut *out, &v).is_ok() {
            out.push(b'\n');
        }
    };
    match message.role {
        Role::System => {}
        Role::User => push(
            json!({"role": "user", "content": message.text_content(), "timestamp": ts, "seq": seq, "id": id}),
        ),
        Role::Assistant => {
            let mut line = Map::new();
            line.insert("role".into(), "assistant".into());
            line.insert("content".into(), message.text_content().into());
            let calls: Vec<Value> = message
                .tool_calls()
                .into_iter()
                .map(
                    |(id, name, arguments)| json!({"id": id, "tool": name, "arguments": arguments}),
                )
                .collect();
            if !calls.is_empty() {
                line.insert("tool_calls".into(), Value::Array(calls));
            }
            line.insert("timestamp".into(), ts);
            line.insert("seq".into(), seq.into());
            line.insert("id".into(), id);
            push(Value::Object(line));
        }
        Role::Tool => {
            for block in &message.content {
                if let ContentBlock::ToolResult {
                    call_id,
                    output,
                    is_error,
                } = block
                {
                    let mut line = json!({"role": "tool", "tool_call_id": call_id, "content": output, "timestamp": ts.clone(), "seq": seq, "id": id.clone()});
                    if *is_error {
                        line["is_error"] = Value::Bool(true);
                    }
                    push(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::BranchId;

    #[test]
    fn amplifier_shapes() {
        let b = BranchId::main();
        let mut out = Vec::new();
        message_lines(&Message::text(b.clone(), Role::User, "hi"), 2, &mut out);
        message_lines(
            &Message::new(
                b.clone(),
                Role::Assistant,
                vec![
                    ContentBlock::text("calling"),
                    ContentBlock::ToolCall {
                        id: "c1".into(),
                        name: "read".into(),
                        arguments: json!({"path": "a"}),
                    },
                ],
            ),
            3,
            &mut out,
        );
        message_lines(
            &Message::new(
                b.clone(),
                Role::Tool,
                vec![ContentBlock::ToolResult {
                    call_id: "c1".into(),
                    output: "data".into(),
                    is_error: false,
                }],
            ),
            3,
            &mut out,
        );
        message_lines(&Message::text(b, Role::System, "sys"), 5, &mut out);
        let lines: Vec<Value> = out
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["role"], "user");
        assert_eq!(lines[0]["content"], "hi");
        assert!(lines[0]["timestamp"].is_string());
        assert_eq!(
            lines[1]["tool_calls"][0],
            json!({"id": "c1", "tool": "read", "arguments": {"path": "a"}})
        );
        assert_eq!(
            lines[2],
            json!({"role": "tool", "tool_call_id": "c1", "content": "data", "timestamp": lines[2]["timestamp"], "seq": 3, "id": lines[2]["id"]})
        );
        assert_eq!(lines[0]["seq"], 2);
    }
}
