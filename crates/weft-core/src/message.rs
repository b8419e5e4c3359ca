//! Messages and their content blocks.
//!
//! A [`Message`] belongs to one branch of a session and carries a list of
//! [`ContentBlock`]s. The serde shape here is the on-disk and on-the-wire
//! format (inside a `message` record of the session log), so it only grows:
//! new optional fields may be added, nothing is renamed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{BranchId, MessageId};

/// Who produced a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person (or an agent acting as one).
    User,
    /// The model.
    Assistant,
    /// Results of tool calls the model asked for.
    Tool,
}

impl Role {
    /// The lower-case name used on the wire (`"user"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "tool" => Ok(Role::Tool),
            other => Err(format!(
                "unknown role {other:?}: use system, user, assistant or tool"
            )),
        }
    }
}

/// The source of an image block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// Base64-encoded bytes.
    Base64 {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// The base64 data.
        data: String,
    },
    /// An URL the provider fetches itself.
    Url {
        /// The address of the image.
        url: String,
    },
}

/// One piece of a message's content.
///
/// Deserialised by hand (see `wire_de`): the same inputs as the derived
/// internally tagged form, without buffering when `type` comes first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// The model's visible reasoning. Some providers (Anthropic) require the
    /// block, with its signature, to be sent back unchanged.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// The provider's signature over the block, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A request by the model to run a tool.
    ToolCall {
        /// The call id, unique within the message.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON value (normally an object).
        arguments: Value,
    },
    /// The result of a tool call, answered in a `tool` message.
    ToolResult {
        /// The id of the [`ContentBlock::ToolCall`] this answers.
        call_id: String,
        /// The tool's output as text.
        output: String,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: bool,
    },
    /// An image.
    Image {
        /// Where the image's bytes are.
        source: ImageSource,
    },
}

impl ContentBlock {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text { text: text.into() }
    }

    /// The block's text for display and search: text, thinking, tool output,
    /// or the tool call rendered as `name(arguments)`.
    pub fn plain_text(&self) -> Option<String> {
        match self {
            ContentBlock::Text { text } => Some(text.clone()),
            ContentBlock::Thinking { .. } | ContentBlock::Image { .. } => None,
            ContentBlock::ToolCall {
                name, arguments, ..
            } => Some(format!("{name}({arguments})")),
            ContentBlock::ToolResult { output, .. } => Some(output.clone()),
        }
    }
}

/// Token usage reported by a provider for one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens billed.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens billed.
    #[serde(default)]
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_creation_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Adds `other` to `self`, field by field. Saturates at `u64::MAX`:
    /// the counts come from logs and providers, and a huge one must not
    /// panic the fold of a session.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cache_creation_tokens = self
            .cache_creation_tokens
            .saturating_add(other.cache_creation_tokens);
    }

    /// Input plus output tokens (saturating).
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Whether every field is zero.
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// Roughly how many bytes `value` takes as JSON, without serialising it.
pub fn json_size(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_size(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + json_size(v))
                .sum::<usize>()
        }
    }
}

/// Metadata key: the id of the message this one was cloned from by a branch
/// split.
pub const META_CLONE_FROM: &str = "clone_from";
/// Metadata key: `true` on a message that was loaded (imported) rather than
/// produced in this session.
pub const META_LOADED: &str = "loaded";

/// Metadata flag of a branch's system message (LionAGI's `System` message,
/// recorded when the branch is made): a row of the branch's messages and
/// the table export; the model gets the branch's system prompt instead.
pub const META_BRANCH_SYSTEM: &str = "branch_system";
/// Metadata key: `true` on a tool result weft made up itself (a cancelled,
/// interrupted or orphaned call), not produced by the tool.
pub const META_SYNTHETIC: &str = "synthetic";
/// Metadata key of a tool message: the structured data the tool returned
/// beside its text ([`crate::tool::ToolOutput::data`]), e.g. the `task`
/// tool's `{session_id, agent, response, status}`.
pub const META_TOOL_DATA: &str = "tool_data";

/// One message of a branch's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The message id.
    pub id: MessageId,
    /// The branch the message belongs to.
    #[serde(default)]
    pub branch: BranchId,
    /// Who produced it.
    pub role: Role,
    /// The content blocks, in order.
    pub content: Vec<ContentBlock>,
    /// Who sent it (a branch id, an agent name, `user`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Who it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// When it was created.
    #[serde(deserialize_with = "crate::wire_de::timestamp")]
    pub timestamp: DateTime<Utc>,
    /// The provider's usage for the response that produced this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The model that produced it (assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Free-form metadata (`clone_from`, `loaded`, `synthetic`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// The answer's JSON value, validated against the turn's response
    /// schema (assistant messages of structured turns; see
    /// [`crate::structured`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured: Option<Value>,
}

impl Message {
    /// A new message with a fresh id and the current time.
    pub fn new(branch: BranchId, role: Role, content: Vec<ContentBlock>) -> Self {
        Self {
            id: MessageId::new_v7(),
            branch,
            role,
            content,
            sender: None,
            recipient: None,
            timestamp: Utc::now(),
            usage: None,
            model: None,
            metadata: Map::new(),
            structured: None,
        }
    }

    /// A text message.
    pub fn text(branch: BranchId, role: Role, text: impl Into<String>) -> Self {
        Self::new(branch, role, vec![ContentBlock::text(text)])
    }

    /// The concatenated text blocks (no thinking, no tool calls).
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for block in &self.content {
            if let ContentBlock::Text { text } = block {
                out.push_str(text);
            }
        }
        out
    }

    /// Everything searchable in the message, joined by newlines.
    pub fn searchable_text(&self) -> String {
        self.content
            .iter()
            .filter_map(ContentBlock::plain_text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The tool calls the message asks for, in order: `(id, name, arguments)`.
    pub fn tool_calls(&self) -> Vec<(&str, &str, &Value)> {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolCall {
                    id,
                    name,
                    arguments,
                } => Some((id.as_str(), name.as_str(), arguments)),
                _ => None,
            })
            .collect()
    }

    /// The call ids this message answers (tool results).
    pub fn tool_result_ids(&self) -> Vec<&str> {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolResult { call_id, .. } => Some(call_id.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether the message is text only (so it can be shown as a plain
    /// string, as amplifierd clients expect).
    pub fn is_text_only(&self) -> bool {
        self.content
            .iter()
            .all(|b| matches!(b, ContentBlock::Text { .. }))
    }

    /// A rough token estimate (4 bytes a token) used for context budgeting.
    pub fn estimated_tokens(&self) -> usize {
        let bytes: usize = self
            .content
            .iter()
            .map(|b| match b {
                ContentBlock::Text { text } => text.len(),
                ContentBlock::Thinking { thinking, .. } => thinking.len(),
                ContentBlock::ToolCall {
                    name, arguments, ..
                } => name.len() + json_size(arguments),
                ContentBlock::ToolResult { output, .. } => output.len(),
                ContentBlock::Image { .. } => 4 * 1600,
            })
            .sum();
        bytes / 4 + 4
    }

    /// Whether the metadata flag `key` is `true`.
    pub fn flag(&self, key: &str) -> bool {
        self.metadata.get(key).and_then(Value::as_bool) == Some(true)
    }

    /// A tool result message answering `call_id` with an error, marked
    /// synthetic (weft made it up: the call was cancelled, interrupted or
    /// orphaned).
    pub fn synthetic_tool_error(branch: BranchId, call_id: &str, reason: &str) -> Self {
        let mut m = Self::new(
            branch,
            Role::Tool,
            vec![ContentBlock::ToolResult {
                call_id: call_id.to_string(),
                output: reason.to_string(),
                is_error: true,
            }],
        );
        m.metadata.insert(META_SYNTHETIC.into(), Value::Bool(true));
        m
    }
}

/// The tool calls in `messages` that no later message answers, in order:
/// `(branch, call id)`. Used to repair a transcript that ends mid-tool (a
/// crash, a cancellation, a fork cut).
pub fn unanswered_tool_calls<'a, I>(messages: I) -> Vec<(BranchId, String)>
where
    I: IntoIterator<Item = &'a Message>,
{
    let mut pending: Vec<(BranchId, String)> = Vec::new();
    for m in messages {
        for (id, _, _) in m.tool_calls() {
            pending.push((m.branch.clone(), id.to_string()));
        }
        for answered in m.tool_result_ids() {
            pending.retain(|(b, id)| !(b == &m.branch && id == answered));
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_block_wire_shape() {
        let b = ContentBlock::ToolCall {
            id: "c1".into(),
            name: "read_file".into(),
            arguments: serde_json::json!({"path": "a.txt"}),
        };
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"tool_call","id":"c1","name":"read_file","arguments":{"path":"a.txt"}})
        );
        let r: ContentBlock = serde_json::from_value(
            serde_json::json!({"type":"tool_result","call_id":"c1","output":"x"}),
        )
        .unwrap();
        assert_eq!(
            r,
            ContentBlock::ToolResult {
                call_id: "c1".into(),
                output: "x".into(),
                is_error: false
            }
        );
    }

    #[test]
    fn message_round_trips() {
        let mut m = Message::text(BranchId::main(), Role::User, "hello");
        m.usage = Some(Usage {
            input_tokens: 3,
            ..Default::default()
        });
        let s = serde_json::to_string(&m).unwrap();
        let back: Message = serde_json::from_str(&s).unwrap();
        assert_eq!(m, back);
    }

    #[test]
    fn finds_unanswered_calls() {
        let b = BranchId::main();
        let call = Message::new(
            b.clone(),
            Role::Assistant,
            vec![
                ContentBlock::ToolCall {
                    id: "a".into(),
                    name: "t".into(),
                    arguments: Value::Null,
                },
                ContentBlock::ToolCall {
                    id: "b".into(),
                    name: "t".into(),
                    arguments: Value::Null,
                },
            ],
        );
        let answer = Message::new(
            b.clone(),
            Role::Tool,
            vec![ContentBlock::ToolResult {
                call_id: "a".into(),
                output: "ok".into(),
                is_error: false,
            }],
        );
        let pending = unanswered_tool_calls([&call, &answer]);
        assert_eq!(pending, vec![(b, "b".to_string())]);
    }
}
