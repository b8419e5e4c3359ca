//! Structured output through tool-forcing (Anthropic): the request offers a
//! synthetic tool whose `input_schema` is the response schema and forces
//! it (`tool_choice: {type: "tool", name}`); the model's call of that tool
//! is the answer. This module turns that call back into a text block of
//! its JSON input, so the kernel sees an answer (never a tool to run).
//!
//! It knows the kernel's stream events only, not any vendor's wire format.

use std::collections::HashSet;

use futures::StreamExt;
use serde_json::{Value, json};
use weft_core::message::ContentBlock;
use weft_core::provider::{BlockKind, ChatResponse, ProviderStream, StopReason, StreamEvent};
use weft_core::structured::ResponseFormat;

/// The description of the synthetic answer tool.
const ANSWER_TOOL_DESCRIPTION: &str =
    "Give your final answer as this tool's input: it must match the input schema exactly.";

/// The synthetic tool (Anthropic's shape) forcing the answer into
/// `format`'s schema.
pub(crate) fn answer_tool(format: &ResponseFormat) -> Value {
    json!({
        "name": format.name,
        "description": ANSWER_TOOL_DESCRIPTION,
        "input_schema": format.schema,
    })
}

/// `stream` with calls of the answer tool `name` turned into text blocks
/// of their JSON input (deltas included), and a response that stopped for
/// that call ending as a natural end.
pub(crate) fn answer_calls_as_text(stream: ProviderStream, name: String) -> ProviderStream {
    let mut answers: HashSet<usize> = HashSet::new();
    Box::pin(stream.map(move |event| {
        Ok(match event? {
            StreamEvent::BlockStart {
                index,
                kind: BlockKind::ToolCall { name: called, .. },
            } if called == name => {
                answers.insert(index);
                StreamEvent::BlockStart {
                    index,
                    kind: BlockKind::Text,
                }
            }
            StreamEvent::ToolArgumentsDelta { index, fragment } if answers.contains(&index) => {
                StreamEvent::TextDelta {
                    index,
                    text: fragment,
                }
            }
            StreamEvent::BlockEnd { index, block } => StreamEvent::BlockEnd {
                index,
                block: as_text(block, &name),
            },
            StreamEvent::Completed(response) => StreamEvent::Completed(complete(response, &name)),
            other => other,
        })
    }))
}

/// A call of the answer tool as the text of its input; other blocks as
/// they are.
fn as_text(block: ContentBlock, name: &str) -> ContentBlock {
    match block {
        ContentBlock::ToolCall {
            name: called,
            arguments,
            ..
        } if called == name => ContentBlock::text(arguments.to_string()),
        other => other,
    }
}

fn complete(mut response: ChatResponse, name: &str) -> ChatResponse {
    let answered = response
        .content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolCall { name: called, .. } if called == name));
    response.content = response
        .content
        .into_iter()
        .map(|b| as_text(b, name))
        .collect();
    let other_calls = response
        .content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolCall { .. }));
    if answered && !other_calls && response.stop_reason == StopReason::ToolUse {
        response.stop_reason = StopReason::EndTurn;
    }
    response
}
