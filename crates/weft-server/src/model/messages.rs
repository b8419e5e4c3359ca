//! Messages: content, appended messages, transcript entries and prompts.

use super::*;

/// Message content: a plain string, or content blocks
/// (`{"type": "text", "text": "..."}`, …). Documented by [`content_in`].
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

/// `POST /api/v1/sessions/{id}/messages`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppendMessageRequest {
    /// The content: a string, or content blocks.
    #[schema(schema_with = content_in)]
    pub content: MessageContent,
    /// `user` (default), `assistant`, `system` or `tool`.
    #[serde(default)]
    #[schema(pattern = "^(user|assistant|system|tool)?$")]
    pub role: Option<String>,
    /// The branch (default: the session's default branch).
    #[serde(default)]
    pub branch: Option<String>,
    /// Who sent it (amplifierd's `agent`).
    #[serde(default, alias = "sender")]
    pub agent: Option<String>,
}

/// One transcript entry. `content` is a string for a text-only message and
/// an array of content blocks otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptMessage {
    /// The message id.
    pub id: String,
    /// The log seq that appended it.
    pub seq: u64,
    /// `user`, `assistant`, `system` or `tool`.
    pub role: String,
    /// A string, or content blocks.
    #[schema(schema_with = content_out)]
    pub content: Value,
    /// When it was written.
    pub timestamp: DateTime<Utc>,
    /// Its branch.
    pub branch: String,
    /// Who sent it.
    pub sender: Option<String>,
    /// Who it is for.
    pub recipient: Option<String>,
    /// The model that wrote it.
    pub model: Option<String>,
    /// Token usage of the response that produced it (null for messages
    /// no model produced).
    #[schema(value_type = Option<MessageUsage>)]
    pub usage: Option<Value>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "Map::is_empty", default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// A structured turn's answer, validated against its response schema
    /// (assistant messages of turns run with a `responseFormat`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Value)]
    pub structured: Option<Value>,
}

impl TranscriptMessage {
    /// The API view of a logged message.
    pub fn from_logged(m: &LoggedMessage) -> Self {
        Self::from_message(m.seq, &m.message)
    }

    /// The API view of `message` appended at `seq`.
    pub fn from_message(seq: u64, message: &Message) -> Self {
        let content = if message.is_text_only() {
            Value::String(message.text_content())
        } else {
            serde_json::to_value(&message.content).unwrap_or(Value::Null)
        };
        Self {
            id: message.id.to_string(),
            seq,
            role: message.role.to_string(),
            content,
            timestamp: message.timestamp,
            branch: message.branch.to_string(),
            sender: message.sender.clone(),
            recipient: message.recipient.clone(),
            model: message.model.clone(),
            usage: message
                .usage
                .as_ref()
                .and_then(|u| serde_json::to_value(u).ok()),
            metadata: message.metadata.clone(),
            structured: message.structured.clone(),
        }
    }
}

/// `POST /api/v1/sessions/{id}/send-message` and `/execute`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageRequest {
    /// The prompt (not blank).
    #[schema(pattern = "\\S")]
    pub content: String,
    /// The branch to run on (default: the session's default branch).
    #[serde(default)]
    pub branch: Option<String>,
    /// Structured output: the answer must be JSON valid against this JSON
    /// Schema (or `{name, schema, strict}`); the validated value is the
    /// assistant message's `structured` (and `/execute`'s `done`). An
    /// invalid schema is a 422.
    #[serde(default, alias = "response_format")]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
}

/// The answer to `send-message`: the turn runs in the background.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageResponse {
    /// `executing`, `queued` (behind the running turn) or `interrupting`
    /// (the running turn is being cancelled for this one).
    pub status: String,
    /// The session.
    pub session_id: String,
    /// The branch it runs on (turns on different branches run
    /// concurrently; the multitask policy applies per branch).
    pub branch: String,
    /// The turn's id: the session's records and events of the turn (on
    /// `/stream`, `/execute`) carry it as `turn`.
    pub turn: String,
    /// For `queued`: how many prompts run before this one.
    pub position: Option<usize>,
}

/// `POST /api/v1/sessions/{id}/cancel` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct CancelParams {
    /// Only the turn of this branch (id or name; default: every branch).
    pub branch: Option<String>,
}

/// The answer to `cancel`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelResponse {
    /// How many running turns were told to stop.
    pub cancelled: usize,
}
