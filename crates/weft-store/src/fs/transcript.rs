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
//! importer keeps the ids, joining the `tool` lines of one message). Messages are appended as their records
//! are; system messages are left out (as Amplifier does). The file is
//! derived from `log.jsonl` and is not fsync'd: an append that finds the log
//! ahead of the transcript's last `seq` (after a crash, or when another
//! process wrote without updating it) adds the missing lines first, and a
//! rewind or a change of the default branch rewrites the file from the log.
//! Tool results become one `tool` line each (`"is_error": true` on a
//! failed one); a message's text blocks are joined into `content`.
//!
//! # Repair
//!
//! The transcript never gates the log: it is brought up to date *after* the
//! log append, and a failure (a full disk) is only logged; the next append
//! repairs it. A failed append cuts the file back to where it was; a torn
//! last line found later (a crash, another process's failed write) is cut
//! off and the missing lines appended, so repairing costs the missing lines,
//! not a rewrite of the whole file. Only an unreadable last line, a rewind
//! or a default-branch switch rewrite the file (temp file + rename, the temp
//! file removed when the write fails).

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::Path;

use serde_json::{Map, Value, json};
use weft_core::message::{ContentBlock, Message, Role};
use weft_core::record::{Record, RecordKind};
use weft_core::store::StoreError;
use weft_core::view::SessionView;

use super::log::{self, BackLines};
use super::{Folded, FsBackend, LOG_FILE, TRANSCRIPT_FILE};
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

impl FsBackend {
    /// Where `transcript.jsonl` stands (see [`Progress`]).
    fn transcript_progress(&self, dir: &Path) -> Result<Progress, StoreError> {
        let path = dir.join(TRANSCRIPT_FILE);
        let file = match no_follow().read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Progress::Seq(0)),
            Err(e) => return Err(io_err(&path, e)),
        };
        let len = file.metadata().at(&path)?.len();
        let mut lines = BackLines::new(&file, len, &self.bytes_read);
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

    /// Makes `transcript.jsonl` reflect the log up to `folded`'s head, when
    /// that is not known already (another writer, a crash or a failed write
    /// between the log write and the transcript write): cuts off a torn
    /// last line, then appends the missing lines, or rewrites the file when
    /// its last line is unreadable or the missing records rewind or switch
    /// the default branch.
    pub(super) fn catch_up_transcript(
        &self,
        dir: &Path,
        file: &File,
        folded: &mut Folded,
    ) -> Result<(), StoreError> {
        let head = folded.meta.last_seq;
        if folded.transcript_seq == Some(head) {
            return Ok(());
        }
        let mut progress = self.transcript_progress(dir)?;
        if let Progress::Torn(start) = progress {
            // A failed write was here: an older weft may also have left
            // the temp file of a failed rewrite holding the disk's space.
            sweep_temp_files(dir);
            let path = dir.join(TRANSCRIPT_FILE);
            tracing::warn!(file = %path.display(), offset = start, "cutting off a torn last line of transcript.jsonl");
            no_follow()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(start))
                .at(&path)?;
            progress = self.transcript_progress(dir)?;
        }
        let done = match progress {
            Progress::Seq(t) if t <= head => t,
            _ => {
                self.rewrite_transcript(dir, file, folded.valid_len)?;
                folded.transcript_seq = Some(head);
                return Ok(());
            }
        };
        if done < head {
            let log_path = dir.join(LOG_FILE);
            let start =
                log::seek_seq(file, folded.valid_len, done + 1, &self.bytes_read).at(&log_path)?;
            let bytes = self.read_bytes(file, start, folded.valid_len, &log_path)?;
            let mut missing = Vec::new();
            codec::decode_lines(
                &bytes,
                start,
                done + 1,
                usize::MAX,
                &log_path.display().to_string(),
                &mut missing,
            );
            let prev_default = folded.meta.default_branch.clone();
            self.write_transcript_records(dir, file, folded, &missing, &prev_default)?;
        }
        folded.transcript_seq = Some(head);
        Ok(())
    }

    /// Adds the transcript lines of `records` (just appended to the log),
    /// rewriting the file instead when they rewind or switch the default
    /// branch (`prev_default`: the default branch before them). A failed
    /// append cuts the file back to its previous length.
    pub(super) fn write_transcript_records(
        &self,
        dir: &Path,
        file: &File,
        folded: &Folded,
        records: &[Record],
        prev_default: &weft_core::BranchId,
    ) -> Result<(), StoreError> {
        let default = &folded.meta.default_branch;
        let rewrite = records.iter().any(|r| match &r.kind {
            RecordKind::Rewind { branch, .. } => branch == default || branch == prev_default,
            RecordKind::DefaultBranch { .. } => true,
            RecordKind::BranchRemoved { branch, .. } => branch == prev_default,
            _ => false,
        });
        if rewrite {
            return self.rewrite_transcript(dir, file, folded.valid_len);
        }
        let mut lines = Vec::new();
        for r in records {
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
            // Leave no torn line behind (the next append adds them again).
            let _ = out.set_len(before);
            return Err(io_err(&path, e));
        }
        Ok(())
    }

    /// Rewrites `transcript.jsonl` from the log.
    fn rewrite_transcript(
        &self,
        dir: &Path,
        file: &File,
        valid_len: u64,
    ) -> Result<(), StoreError> {
        let log_path = dir.join(LOG_FILE);
        let bytes = self.read_bytes(file, 0, valid_len, &log_path)?;
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
