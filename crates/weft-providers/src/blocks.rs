//! Assembling streamed content blocks.
//!
//! [`Blocks`] is what every vendor decoder writes into: it numbers blocks in
//! the order they start (the `index` of every [`StreamEvent`]), emits
//! `BlockStart` / `TextDelta` / `ThinkingDelta` / `ToolArgumentsDelta` /
//! `BlockEnd` in order, accumulates each block and builds the final
//! [`ContentBlock`]s.
//!
//! Tool-call arguments are parsed once, when the block ends, from the
//! concatenated fragments. Empty arguments mean `{}`. Arguments that are not
//! valid JSON fail the stream ([`Fail::Stream`]): weft never runs a tool on
//! arguments it would have to guess (a `{"_raw": ...}` stand-in could make a
//! tool with all-optional inputs act on defaults the model never asked for).

use serde_json::{Map, Value};
use weft_core::message::ContentBlock;
use weft_core::provider::{BlockKind, StopReason, StreamEvent};

use crate::http::{Fail, truncate};

/// The prefix that marks a [`ContentBlock::Thinking`] signature as the
/// opaque payload of an Anthropic `redacted_thinking` block (weft's content
/// model has no variant for it; the block must be sent back unchanged).
pub(crate) const REDACTED_THINKING_PREFIX: &str = "redacted_thinking:";

/// A block being assembled.
#[derive(Debug)]
enum Acc {
    Text(String),
    Thinking {
        text: String,
        signature: String,
    },
    Redacted(String),
    Tool {
        id: String,
        name: String,
        args: String,
        initial: Option<Value>,
    },
}

#[derive(Debug)]
struct Slot {
    acc: Acc,
    done: Option<ContentBlock>,
}

/// The blocks of one response, in the order they started.
#[derive(Debug, Default)]
pub(crate) struct Blocks {
    slots: Vec<Slot>,
}

impl Blocks {
    fn push(&mut self, acc: Acc, kind: BlockKind, out: &mut Vec<StreamEvent>) -> usize {
        let index = self.slots.len();
        self.slots.push(Slot { acc, done: None });
        out.push(StreamEvent::BlockStart { index, kind });
        index
    }

    /// Starts a text block.
    pub(crate) fn start_text(&mut self, out: &mut Vec<StreamEvent>) -> usize {
        self.push(Acc::Text(String::new()), BlockKind::Text, out)
    }

    /// Starts a thinking block.
    pub(crate) fn start_thinking(&mut self, out: &mut Vec<StreamEvent>) -> usize {
        self.push(
            Acc::Thinking {
                text: String::new(),
                signature: String::new(),
            },
            BlockKind::Thinking,
            out,
        )
    }

    /// Starts (and holds) a redacted thinking block with its opaque data.
    pub(crate) fn start_redacted(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> usize {
        self.push(Acc::Redacted(data.to_string()), BlockKind::Thinking, out)
    }

    /// Starts a tool call. `initial` is an input the vendor sent whole at
    /// the start (used when no argument fragments follow).
    pub(crate) fn start_tool(
        &mut self,
        id: &str,
        name: &str,
        initial: Option<Value>,
        out: &mut Vec<StreamEvent>,
    ) -> usize {
        self.push(
            Acc::Tool {
                id: id.to_string(),
                name: name.to_string(),
                args: String::new(),
                initial,
            },
            BlockKind::ToolCall {
                id: id.to_string(),
                name: name.to_string(),
            },
            out,
        )
    }

    fn open(&mut self, index: usize) -> Result<&mut Acc, Fail> {
        match self.slots.get_mut(index) {
            Some(Slot { acc, done: None }) => Ok(acc),
            Some(_) => Err(Fail::Stream(format!(
                "content arrived for block {index} after it ended"
            ))),
            None => Err(Fail::Stream(format!(
                "content arrived for block {index}, which never started"
            ))),
        }
    }

    /// Whether block `index` exists and has not ended.
    pub(crate) fn is_open(&self, index: usize) -> bool {
        matches!(self.slots.get(index), Some(Slot { done: None, .. }))
    }

    /// Appends text to a text block.
    pub(crate) fn text(
        &mut self,
        index: usize,
        text: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Fail> {
        match self.open(index)? {
            Acc::Text(t) => t.push_str(text),
            _ => return Err(mismatch(index, "text")),
        }
        if !text.is_empty() {
            out.push(StreamEvent::TextDelta {
                index,
                text: text.to_string(),
            });
        }
        Ok(())
    }

    /// Appends reasoning to a thinking block.
    pub(crate) fn thinking(
        &mut self,
        index: usize,
        text: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Fail> {
        match self.open(index)? {
            Acc::Thinking { text: t, .. } => t.push_str(text),
            _ => return Err(mismatch(index, "thinking")),
        }
        if !text.is_empty() {
            out.push(StreamEvent::ThinkingDelta {
                index,
                text: text.to_string(),
            });
        }
        Ok(())
    }

    /// Appends to a thinking block's signature.
    pub(crate) fn signature(&mut self, index: usize, signature: &str) -> Result<(), Fail> {
        match self.open(index)? {
            Acc::Thinking { signature: s, .. } => {
                s.push_str(signature);
                Ok(())
            }
            _ => Err(mismatch(index, "signature")),
        }
    }

    /// Appends a fragment of a tool call's JSON arguments.
    pub(crate) fn args(
        &mut self,
        index: usize,
        fragment: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Fail> {
        match self.open(index)? {
            Acc::Tool { args, .. } => args.push_str(fragment),
            _ => return Err(mismatch(index, "tool arguments")),
        }
        if !fragment.is_empty() {
            out.push(StreamEvent::ToolArgumentsDelta {
                index,
                fragment: fragment.to_string(),
            });
        }
        Ok(())
    }

    /// Fills in a tool call's id or name that arrived after its start.
    pub(crate) fn complete_tool(
        &mut self,
        index: usize,
        new_id: Option<&str>,
        new_name: Option<&str>,
    ) -> Result<(), Fail> {
        if let Acc::Tool { id, name, .. } = self.open(index)? {
            if let Some(n) = new_id.filter(|n| !n.is_empty() && id.is_empty()) {
                *id = n.to_string();
            }
            if let Some(n) = new_name.filter(|n| !n.is_empty() && name.is_empty()) {
                *name = n.to_string();
            }
        }
        Ok(())
    }

    /// Ends block `index`, emitting `BlockEnd` with the assembled block.
    pub(crate) fn end(&mut self, index: usize, out: &mut Vec<StreamEvent>) -> Result<(), Fail> {
        let acc = self.open(index)?;
        let block = match acc {
            Acc::Text(text) => ContentBlock::Text {
                text: std::mem::take(text),
            },
            Acc::Thinking { text, signature } => ContentBlock::Thinking {
                thinking: std::mem::take(text),
                signature: (!signature.is_empty()).then(|| std::mem::take(signature)),
            },
            Acc::Redacted(data) => ContentBlock::Thinking {
                thinking: String::new(),
                signature: Some(format!("{REDACTED_THINKING_PREFIX}{data}")),
            },
            Acc::Tool {
                id,
                name,
                args,
                initial,
            } => {
                if name.is_empty() {
                    return Err(Fail::Stream(format!(
                        "tool call {index} ended without a tool name"
                    )));
                }
                let arguments = parse_arguments(name, args, initial.take())?;
                ContentBlock::ToolCall {
                    id: std::mem::take(id),
                    name: std::mem::take(name),
                    arguments,
                }
            }
        };
        self.slots[index].done = Some(block.clone());
        out.push(StreamEvent::BlockEnd { index, block });
        Ok(())
    }

    /// Ends every block still open, in order.
    pub(crate) fn end_all(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), Fail> {
        for index in 0..self.slots.len() {
            if self.is_open(index) {
                self.end(index, out)?;
            }
        }
        Ok(())
    }

    /// Whether any block is a tool call.
    pub(crate) fn has_tool_calls(&self) -> bool {
        self.slots.iter().any(|s| matches!(s.acc, Acc::Tool { .. }))
    }

    /// The finished blocks, in order (call after [`Blocks::end_all`]).
    pub(crate) fn take_content(&mut self) -> Vec<ContentBlock> {
        std::mem::take(&mut self.slots)
            .into_iter()
            .filter_map(|s| s.done)
            .collect()
    }
}

fn mismatch(index: usize, what: &str) -> Fail {
    Fail::Stream(format!(
        "{what} arrived for block {index}, which is a different kind of block"
    ))
}

/// Parses a tool call's concatenated arguments.
fn parse_arguments(name: &str, args: &str, initial: Option<Value>) -> Result<Value, Fail> {
    if args.trim().is_empty() {
        return Ok(initial.unwrap_or_else(|| Value::Object(Map::new())));
    }
    serde_json::from_str(args).map_err(|e| {
        Fail::Stream(format!(
            "the arguments of the {name:?} tool call are not valid JSON ({e}): {}; the call was not run",
            truncate(args, 200)
        ))
    })
}

/// A stop reason from its common vendor spelling.
pub(crate) fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" | "stop" => StopReason::EndTurn,
        "tool_use" | "tool_calls" | "function_call" => StopReason::ToolUse,
        "max_tokens" | "length" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        other => StopReason::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assembles_in_order_with_consistent_indexes() {
        let mut b = Blocks::default();
        let mut out = Vec::new();
        let t = b.start_thinking(&mut out);
        b.thinking(t, "hmm", &mut out).unwrap();
        b.signature(t, "sig").unwrap();
        b.end(t, &mut out).unwrap();
        let x = b.start_text(&mut out);
        b.text(x, "hi", &mut out).unwrap();
        let c = b.start_tool("c1", "read", None, &mut out);
        b.args(c, "{\"pa", &mut out).unwrap();
        b.args(c, "th\":1}", &mut out).unwrap();
        b.end_all(&mut out).unwrap();
        assert!(b.has_tool_calls());
        let content = b.take_content();
        assert_eq!(
            content,
            vec![
                ContentBlock::Thinking {
                    thinking: "hmm".into(),
                    signature: Some("sig".into())
                },
                ContentBlock::text("hi"),
                ContentBlock::ToolCall {
                    id: "c1".into(),
                    name: "read".into(),
                    arguments: json!({"path": 1})
                },
            ]
        );
        let indexes: Vec<usize> = out
            .iter()
            .map(|e| match e {
                StreamEvent::BlockStart { index, .. }
                | StreamEvent::TextDelta { index, .. }
                | StreamEvent::ThinkingDelta { index, .. }
                | StreamEvent::ToolArgumentsDelta { index, .. }
                | StreamEvent::BlockEnd { index, .. } => *index,
                _ => usize::MAX,
            })
            .collect();
        assert_eq!(indexes, vec![0, 0, 0, 1, 1, 2, 2, 2, 1, 2]);
    }

    #[test]
    fn bad_arguments_and_unknown_blocks_fail() {
        let mut b = Blocks::default();
        let mut out = Vec::new();
        let c = b.start_tool("c1", "read", None, &mut out);
        b.args(c, "{\"path\":", &mut out).unwrap();
        let Err(Fail::Stream(m)) = b.end(c, &mut out) else {
            panic!("expected a stream failure")
        };
        assert!(m.contains("not valid JSON"), "{m}");
        assert!(b.text(7, "x", &mut out).is_err());
        let empty = b.start_tool("c2", "noargs", None, &mut out);
        b.end(empty, &mut out).unwrap();
        assert!(b.end(empty, &mut out).is_err(), "a block ends once");
        let content = b.take_content();
        assert_eq!(
            content,
            vec![ContentBlock::ToolCall {
                id: "c2".into(),
                name: "noargs".into(),
                arguments: json!({})
            }]
        );
    }
}
