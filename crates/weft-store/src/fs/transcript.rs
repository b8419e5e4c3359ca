//! `transcript.jsonl`: the default branch's conversation in the Amplifier
//! CLI's line shape, for tools that read Amplifier sessions.
//!
//! ```json
//! {"role":"user","content":"hi","timestamp":"…"}
//! {"role":"assistant","content":"…","tool_calls":[{"id":"c1","tool":"read","arguments":{…}}],"timestamp":"…"}
//! {"role":"tool","tool_call_id":"c1","content":"…","timestamp":"…"}
//! ```
//!
//! Each line also carries `seq`, the log record it comes from (Amplifier's
//! readers ignore unknown keys). Messages are appended as their records
//! are; system messages are left out (as Amplifier does). The file is
//! derived from `log.jsonl` and is not fsync'd: an append that finds the log
//! ahead of the transcript's last `seq` (after a crash, or when another
//! process wrote without updating it) adds the missing lines first, and a
//! rewind or a change of the default branch rewrites the file from the log.
//! Tool results become one `tool` line each; a message's text blocks are
//! joined into `content`.

use serde_json::{Map, Value, json};
use weft_core::message::{ContentBlock, Message, Role};

/// Appends the transcript lines of `message` (log record `seq`) to `out`.
pub(crate) fn message_lines(message: &Message, seq: u64, out: &mut Vec<u8>) {
    let ts = Value::String(message.timestamp.to_rfc3339());
    let mut push = |v: Value| {
        // Serialising a Value cannot fail.
        if serde_json::to_writer(&mut *out, &v).is_ok() {
            out.push(b'\n');
        }
    };
    match message.role {
        Role::System => {}
        Role::User => push(
            json!({"role": "user", "content": message.text_content(), "timestamp": ts, "seq": seq}),
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
            push(Value::Object(line));
        }
        Role::Tool => {
            for block in &message.content {
                if let ContentBlock::ToolResult {
                    call_id, output, ..
                } = block
                {
                    push(
                        json!({"role": "tool", "tool_call_id": call_id, "content": output, "timestamp": ts.clone(), "seq": seq}),
                    );
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
            json!({"role": "tool", "tool_call_id": "c1", "content": "data", "timestamp": lines[2]["timestamp"], "seq": 3})
        );
        assert_eq!(lines[0]["seq"], 2);
    }
}
