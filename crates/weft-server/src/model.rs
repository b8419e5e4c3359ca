//! The API's request and response bodies.
//!
//! Responses are camelCase; request bodies take camelCase keys and the
//! snake_case ones amplifierd clients send (`profile_name`, …). Message
//! content blocks keep weft's own wire shape (the one in the session log),
//! and agentkernel's `/run` answers with its own `session_id` key.
//!
//! Branches, mail and state (issue 6) follow the same conventions:
//! [`BranchInfo`] / [`BranchDetail`], [`NewBranchRequest`],
//! [`SendMailRequest`] / [`MailInfo`], [`StateEntry`] / [`SetStateRequest`]
//! (a state value is sent wrapped: `{"value": <any JSON>}`).

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use weft_core::message::{ContentBlock, Message};
use weft_core::session::{Mail, MailCategory, SessionMeta, SessionStatus};
use weft_core::view::{BranchView, LoggedMessage, PendingMail};

/// Token usage totals.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's cache.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_creation_tokens: u64,
    /// Input plus output tokens.
    pub total_tokens: u64,
}

/// Where a forked session came from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForkedFromInfo {
    /// The source session.
    pub session_id: String,
    /// The last turn copied.
    pub turn: u64,
    /// The last log seq copied.
    pub seq: u64,
}

/// A session, as the API shows it (amplifierd's fields plus weft's).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The session id.
    pub session_id: String,
    /// The parent (delegating or forked-from) session.
    pub parent_session_id: Option<String>,
    /// The root session of its delegation tree.
    pub trace_id: String,
    /// `created`, `active`, `completed`, `failed` or `terminated`.
    #[schema(value_type = String, example = "active")]
    pub status: SessionStatus,
    /// The profile it runs.
    pub profile_name: String,
    /// Its working directory, relative to the server's project when inside
    /// it.
    pub amplified_dir: String,
    /// The project slug (the directory name in the fs store).
    pub project: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it first became active.
    pub started_at: Option<DateTime<Utc>>,
    /// When it last ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// When its log last changed.
    pub updated_at: DateTime<Utc>,
    /// Its name.
    pub name: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// Messages in the log (all branches).
    pub message_count: u64,
    /// User messages (turns).
    pub turn_count: u64,
    /// Token usage totals.
    pub token_usage: TokenUsage,
    /// Why it failed.
    pub error_message: Option<String>,
    /// The model it talks to.
    pub model: Option<String>,
    /// The sub-agent it runs.
    pub agent_name: Option<String>,
    /// Where it was forked from.
    pub forked_from: Option<ForkedFromInfo>,
    /// The seq of the last record in its log (the latest SSE event id).
    pub last_seq: u64,
    /// The default branch.
    pub default_branch: String,
    /// Whether a turn is running in this server.
    pub running: bool,
    /// Prompts waiting for the running turn (`?multitask=enqueue`).
    pub queued: usize,
    /// Free-form metadata.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl SessionInfo {
    /// The API view of `meta`; `root` is the server's project directory.
    pub fn from_meta(meta: &SessionMeta, root: &str, running: bool, queued: usize) -> Self {
        let dir = Path::new(&meta.project.dir);
        let amplified_dir = match dir.strip_prefix(root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => meta.project.dir.clone(),
        };
        Self {
            session_id: meta.id.to_string(),
            parent_session_id: meta.parent_id.as_ref().map(ToString::to_string),
            trace_id: meta.trace_id.to_string(),
            status: meta.status,
            profile_name: meta.profile.clone(),
            amplified_dir,
            project: meta.project.slug.clone(),
            created_at: meta.created_at,
            started_at: meta.started_at,
            ended_at: meta.ended_at,
            updated_at: meta.updated_at,
            name: meta.name.clone(),
            description: meta.description.clone(),
            message_count: meta.message_count,
            turn_count: meta.turn_count,
            token_usage: TokenUsage {
                input_tokens: meta.usage.input_tokens,
                output_tokens: meta.usage.output_tokens,
                cache_read_tokens: meta.usage.cache_read_tokens,
                cache_creation_tokens: meta.usage.cache_creation_tokens,
                total_tokens: meta.usage.total(),
            },
            error_message: meta.error_message.clone(),
            model: meta.model.clone(),
            agent_name: meta.agent_name.clone(),
            forked_from: meta.forked_from.as_ref().map(|f| ForkedFromInfo {
                session_id: f.session_id.to_string(),
                turn: f.turn,
                seq: f.seq,
            }),
            last_seq: meta.last_seq,
            default_branch: meta.default_branch.to_string(),
            running,
            queued,
            metadata: meta.metadata.clone(),
        }
    }
}

/// `POST /api/v1/sessions/`: all fields optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct CreateSessionRequest {
    /// The working directory, relative to the server's project (default
    /// `.`); it must exist and stay inside the project.
    #[serde(alias = "amplified_dir")]
    pub amplified_dir: Option<String>,
    /// The profile (default: the server's).
    #[serde(alias = "profile_name")]
    pub profile_name: Option<String>,
    /// A parent session (it must exist).
    #[serde(alias = "parent_session_id")]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub parent_session_id: Option<String>,
    /// Settings on top of the profile; `model` (or `llm.model`) picks the
    /// model, the rest is kept in the session's metadata.
    #[serde(alias = "settings_overrides")]
    #[schema(value_type = Option<Object>)]
    pub settings_overrides: Option<Value>,
    /// A name (at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// A description.
    pub description: Option<String>,
}

/// `PATCH /api/v1/sessions/{id}`: an empty string clears a field.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct UpdateSessionRequest {
    /// New name (at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// `POST /api/v1/sessions/{id}/fail`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailRequest {
    /// What went wrong.
    #[serde(alias = "error_message")]
    pub error_message: String,
    /// Structured details.
    #[serde(default, alias = "error_details")]
    #[schema(value_type = Value)]
    pub error_details: Option<Value>,
}

/// A content block as documented (weft-core's `ContentBlock`, which has no
/// schema of its own; a test checks the two agree).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = ContentBlock)]
#[allow(dead_code)] // only documents the wire shape
pub(crate) enum ContentBlockDoc {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// The model's visible reasoning.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// The provider's signature over the block.
        #[serde(default)]
        signature: Option<String>,
    },
    /// A request by the model to run a tool.
    ToolCall {
        /// The call id, unique within the message.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments (any JSON, normally an object).
        #[schema(value_type = Value)]
        arguments: Value,
    },
    /// The result of a tool call, in a `tool` message.
    ToolResult {
        /// The id of the tool call this answers.
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
        source: ImageSourceDoc,
    },
}

/// Where an image block's bytes are (weft-core's `ImageSource`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = ImageSource)]
#[allow(dead_code)] // only documents the wire shape
pub(crate) enum ImageSourceDoc {
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

/// Token usage of one model response (weft-core's `Usage`; the cache
/// counts are left out when zero).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only documents the wire shape
pub(crate) struct MessageUsage {
    /// Prompt tokens billed.
    input_tokens: u64,
    /// Completion tokens billed.
    output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    cache_read_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache.
    #[serde(default)]
    cache_creation_tokens: Option<u64>,
}

/// Message content as a request sends it: a string, or at least one
/// content block.
pub(crate) fn content_in() -> RefOr<Schema> {
    content_schema(Some(1), "A string, or content blocks (at least one)")
}

/// Message content as the API sends it: a string for a text-only message,
/// content blocks otherwise.
pub(crate) fn content_out() -> RefOr<Schema> {
    content_schema(
        None,
        "A string for a text-only message, content blocks otherwise",
    )
}

fn content_schema(min_items: Option<usize>, description: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .description(Some(description))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ArrayBuilder::new()
                .items(Ref::from_schema_name("ContentBlock"))
                .min_items(min_items),
        )
        .into()
}

/// One Server-Sent Event of `/stream` and `/execute`: `event` names it,
/// `data` is JSON text, `id` is the log seq of a durable record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[allow(dead_code)] // only documents the wire shape
pub(crate) struct SseEvent {
    /// The event name (`connected`, `record`, `done`, …; amplifierd's
    /// names with `?compat=amplifierd`).
    #[serde(default)]
    event: Option<String>,
    /// The payload: JSON text.
    data: String,
    /// The seq of the record it carries, for `Last-Event-ID`.
    #[serde(default)]
    id: Option<String>,
}

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
    /// The turn number this server gave the prompt (events of the turn in
    /// `/execute` carry it).
    pub turn: u64,
    /// For `queued`: how many prompts run before this one.
    pub position: Option<usize>,
}

/// `POST /api/v1/sessions/{id}/fork`: after `turn`, after log record
/// `seq`, or (neither) the whole log.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ForkRequest {
    /// The last turn to keep (from 1).
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "whole::optional")]
    pub turn: Option<u64>,
    /// The last log seq to keep.
    #[serde(deserialize_with = "whole::optional")]
    pub seq: Option<u64>,
    /// A name for the new session.
    pub name: Option<String>,
}

/// `POST /api/v1/sessions/cleanup`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupRequest {
    /// Remove sessions not updated for this many days (default 30).
    #[serde(
        default = "thirty",
        alias = "older_than_days",
        deserialize_with = "whole::number"
    )]
    #[schema(maximum = 36500)]
    pub older_than_days: u64,
    /// Only report what would be removed.
    #[serde(default, alias = "dry_run")]
    pub dry_run: bool,
}

fn thirty() -> u64 {
    30
}

/// Whole numbers in request bodies: `3` and `3.0` alike (JSON Schema counts
/// both as integers, and so do JavaScript clients).
mod whole {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error};
    use serde_json::Number;

    /// The largest integer an f64 holds exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;

    fn from(n: &Number) -> Option<u64> {
        n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=EXACT).contains(f))
                .map(|f| f as u64)
        })
    }

    /// A whole number ≥ 0.
    pub(super) fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let n = Number::deserialize(d)?;
        from(&n).ok_or_else(|| D::Error::custom(format!("{n} is not a whole number ≥ 0")))
    }

    /// A count in a query string (`limit`): digits, where a count larger
    /// than any the server can hold means "all" (the largest it can).
    pub(super) fn query_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom(format!(
                "limit: {text:?} is not a whole number ≥ 0"
            )));
        }
        Ok(Some(text.parse().unwrap_or(usize::MAX)))
    }

    /// A whole number ≥ 0, or null.
    pub(super) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => from(&n)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number ≥ 0"))),
        }
    }
}

/// What a cleanup removed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupResponse {
    /// How many sessions were removed (or would be).
    pub removed_count: usize,
    /// Their ids.
    pub removed: Vec<String>,
    /// Old sessions kept because they are active.
    pub kept_active: Vec<String>,
    /// Whether nothing was removed.
    pub dry_run: bool,
}

/// `GET /api/v1/sessions/` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this status: `created`, `active`, `completed`, `failed` or
    /// `terminated`.
    #[param(value_type = Option<String>, pattern = "^(created|active|completed|failed|terminated)$")]
    pub status: Option<SessionStatus>,
    /// Only this profile.
    #[serde(alias = "profileName")]
    pub profile_name: Option<String>,
    /// Names containing this text (case-insensitive).
    pub name: Option<String>,
    /// Page size (1-500, default 50); the next page's cursor is in the
    /// `x-next-cursor` response header.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The cursor from the previous page (empty: the first page).
    #[param(pattern = "^(-?[0-9]{1,15}\\.[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")]
    pub cursor: Option<String>,
}

/// `GET /api/v1/sessions/{id}/transcript` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct TranscriptParams {
    /// Only the last N messages.
    #[serde(deserialize_with = "whole::query_count")]
    pub limit: Option<usize>,
    /// The branch (default: the default branch).
    pub branch: Option<String>,
}

/// What to do with a prompt while a turn is running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Multitask {
    /// Refuse it with 409 (the default).
    #[default]
    Reject,
    /// Run it after the running turn (and any queued before it).
    Enqueue,
    /// Cancel the running turn and run this one next.
    Interrupt,
}

/// The `?multitask=` query of the endpoints that run prompts.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct MultitaskParams {
    /// `reject` (default: 409 while a turn runs), `enqueue` or `interrupt`.
    #[param(value_type = Option<Multitask>)]
    pub multitask: Option<Multitask>,
}

/// The query of `/execute`: the multitask policy and the event names.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ExecuteParams {
    /// `reject` (default: 409 while a turn runs), `enqueue` or `interrupt`.
    #[param(value_type = Option<Multitask>)]
    pub multitask: Option<Multitask>,
    /// `amplifierd`: amplifierd's event names; empty or `weft`: weft's.
    #[param(pattern = "^(weft|amplifierd)?$")]
    pub compat: Option<String>,
}

/// `GET /api/v1/sessions/{id}/stream` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// `amplifierd`: amplifierd's event names instead of weft's (empty or
    /// `weft`: weft's).
    #[param(pattern = "^(weft|amplifierd)?$")]
    pub compat: Option<String>,
    /// Replay the records after this seq first (like the `Last-Event-ID`
    /// header; `0` replays the whole log).
    #[serde(alias = "lastEventId")]
    pub last_event_id: Option<u64>,
}

/// `DELETE /api/v1/sessions/{id}` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Also delete its sub-sessions and forks.
    #[serde(alias = "withChildren")]
    pub with_children: bool,
}

/// A profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileEntry {
    /// Its name.
    pub name: String,
    /// `builtin`, or the file it comes from.
    pub source: String,
    /// What it is for.
    pub description: String,
}

/// agentkernel's `POST /run`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct RunRequest {
    /// A profile name, or a sub-agent of the default profile.
    pub agent: Option<String>,
    /// The prompt (or `prompt`).
    pub message: Option<String>,
    /// The prompt (or `message`).
    pub prompt: Option<String>,
    /// The session to continue, or to create with this id.
    #[serde(alias = "sessionId")]
    #[schema(pattern = "^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")]
    pub session_id: Option<String>,
}

/// agentkernel's `POST /api/v1/chat`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct ChatRequest {
    /// The prompt (not blank).
    #[schema(value_type = String, required = true, pattern = "\\S")]
    pub prompt: Option<String>,
    /// A profile name, or a sub-agent of the default profile.
    pub agent: Option<String>,
    /// The session to continue, or to create with this id.
    #[serde(alias = "sessionId")]
    #[schema(pattern = "^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")]
    pub session_id: Option<String>,
}

/// agentkernel's answer (its own snake_case shape).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunResponse {
    /// The final answer.
    pub result: String,
    /// The session it ran in.
    pub session_id: String,
}

/// An agent `/run` accepts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentEntry {
    /// The name to pass as `agent`.
    pub name: String,
    /// `profile`, or `agent` (a sub-agent of the default profile).
    pub kind: String,
    /// What it does.
    pub description: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// weft's version.
    pub version: String,
    /// The store backend.
    pub store: String,
    /// Sessions loaded in this server.
    pub live_sessions: usize,
    /// Turns running now.
    pub running_turns: usize,
}

/// Where a split branch came from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitFromInfo {
    /// The source branch's id.
    pub branch: String,
    /// The last log seq of the source that was cloned.
    pub upto_seq: u64,
}

/// A branch of a session: one conversation line with its own settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BranchInfo {
    /// Its id (unique in the session).
    pub id: String,
    /// Its name (unique in the session); paths take the id or the name.
    pub name: String,
    /// Messages on it.
    pub message_count: usize,
    /// Whether it is the session's default branch.
    pub default: bool,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Where it was split from, if it was.
    pub created_from: Option<SplitFromInfo>,
    /// Its system message.
    pub system: Option<String>,
    /// The tools it may use (empty: all of the session's).
    pub tools: Vec<String>,
    /// Its model, when it differs from the session's.
    pub model: Option<String>,
    /// Its provider module, when it differs from the session's.
    pub provider: Option<String>,
    /// Mail waiting in its inbox.
    pub inbox: usize,
    /// Whether a turn runs on it in this server.
    pub running: bool,
    /// Prompts waiting for its running turn (`?multitask=enqueue`).
    pub queued: usize,
}

impl BranchInfo {
    /// The API view of `branch`; `default`, `inbox`, `running` and
    /// `queued` come from the session.
    pub fn from_view(
        branch: &BranchView,
        default: bool,
        inbox: usize,
        running: bool,
        queued: usize,
    ) -> Self {
        Self::from_branch(
            &branch.branch,
            branch.messages.len(),
            default,
            inbox,
            running,
            queued,
        )
    }

    /// The API view of `branch` with `message_count` messages.
    pub fn from_branch(
        branch: &weft_core::session::Branch,
        message_count: usize,
        default: bool,
        inbox: usize,
        running: bool,
        queued: usize,
    ) -> Self {
        Self {
            id: branch.id.to_string(),
            name: branch.name.clone(),
            message_count,
            default,
            created_at: branch.created_at,
            created_from: branch.created_from.as_ref().map(|f| SplitFromInfo {
                branch: f.branch.to_string(),
                upto_seq: f.upto_seq,
            }),
            system: branch.system.clone(),
            tools: branch.tools.clone(),
            model: branch.model.clone(),
            provider: branch.provider.clone(),
            inbox,
            running,
            queued,
        }
    }
}

/// One branch with its messages.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BranchDetail {
    /// The branch.
    #[serde(flatten)]
    pub branch: BranchInfo,
    /// Its messages, oldest first (the transcript's shape).
    pub messages: Vec<TranscriptMessage>,
}

/// A message loaded into a new branch (marked `loaded`, so
/// `?exclude_load=true` leaves it out).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BranchMessage {
    /// `user` (default), `assistant`, `system` or `tool`.
    #[serde(default)]
    #[schema(pattern = "^(user|assistant|system|tool)?$")]
    pub role: Option<String>,
    /// The content: a string, or content blocks.
    #[schema(schema_with = content_in)]
    pub content: MessageContent,
    /// Who sent it.
    #[serde(default, alias = "agent")]
    pub sender: Option<String>,
}

/// `POST /api/v1/sessions/{id}/branches`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewBranchRequest {
    /// Its name: 1 to 100 characters, unique in the session (it is also
    /// the id when it is a valid id not yet used).
    #[schema(pattern = "\\S", max_length = 100)]
    pub name: String,
    /// Its system message.
    #[serde(default)]
    pub system: Option<String>,
    /// Messages to load into it.
    #[serde(default)]
    pub messages: Vec<BranchMessage>,
    /// The tools it may use (default: all of the session's).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Its model.
    #[serde(default)]
    pub model: Option<String>,
    /// Its provider module (`provider-anthropic` or `anthropic`, …).
    #[serde(default)]
    pub provider: Option<String>,
}

/// `POST /api/v1/sessions/{id}/branches/{branch}/split`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct SplitRequest {
    /// The new branch's name (default: `<source>-split-<n>`).
    #[schema(max_length = 100)]
    pub name: Option<String>,
}

/// `POST /api/v1/sessions/{id}/branches/{branch}/send-message`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BranchPromptRequest {
    /// The prompt (not blank).
    #[schema(pattern = "\\S")]
    pub content: String,
}

/// `GET /api/v1/sessions/{id}/branches/{branch}/transcript` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct LimitParams {
    /// Only the last N messages.
    #[serde(deserialize_with = "whole::query_count")]
    pub limit: Option<usize>,
}

/// `POST /api/v1/sessions/{id}/mail`: from one branch to another (`to`)
/// or to every other branch (`broadcast: true`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMailRequest {
    /// The sending branch (id or name).
    pub from: String,
    /// The receiving branch (id or name).
    #[serde(default)]
    pub to: Option<String>,
    /// Send to every other branch instead.
    #[serde(default)]
    pub broadcast: bool,
    /// `message` (enters the recipient's conversation), `tool` (hands over
    /// one of the sender's tools) or `model` (hands over a model/provider
    /// setting).
    #[schema(value_type = String, example = "message", pattern = "^(message|tool|model)$")]
    pub category: MailCategory,
    /// The payload: for `message` a string or `{"role", "content"}`; for
    /// `tool` a tool name; for `model` `{"model"?, "provider"?}`.
    #[schema(value_type = Value)]
    pub item: Value,
}

/// Mail between branches.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailInfo {
    /// The mail id.
    pub id: String,
    /// The log seq of the record that sent it (send order).
    pub seq: u64,
    /// The sending branch.
    pub from: String,
    /// The recipients, resolved when it was sent.
    pub to: Vec<String>,
    /// The recipients that have not collected it yet.
    pub waiting: Vec<String>,
    /// Whether it was sent as a broadcast.
    pub broadcast: bool,
    /// `message`, `tool` or `model`.
    #[schema(value_type = String)]
    pub category: MailCategory,
    /// The payload.
    #[schema(value_type = Value)]
    pub item: Value,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

impl MailInfo {
    /// The API view of `mail` sent at `seq`, still `waiting` for these.
    pub fn from_mail(mail: &Mail, seq: u64, waiting: &[weft_core::BranchId]) -> Self {
        Self {
            id: mail.id.clone(),
            seq,
            from: mail.from.to_string(),
            to: mail.to.iter().map(ToString::to_string).collect(),
            waiting: waiting.iter().map(ToString::to_string).collect(),
            broadcast: mail.broadcast,
            category: mail.category,
            item: mail.item.clone(),
            sent_at: mail.sent_at,
        }
    }

    /// The API view of pending mail.
    pub fn from_pending(p: &PendingMail) -> Self {
        Self::from_mail(&p.mail, p.seq, &p.waiting)
    }
}

/// `GET /api/v1/sessions/{id}/mail` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct MailParams {
    /// Only mail waiting for this branch (id or name).
    pub to: Option<String>,
}

/// `POST /api/v1/sessions/{id}/mail/collect`: delivers waiting mail, for
/// one recipient or all, from one sender or all, in send order.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct CollectMailRequest {
    /// Only for this branch (id or name).
    pub to: Option<String>,
    /// Only from this branch (id or name).
    pub from: Option<String>,
}

/// What a collect delivered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectMailResponse {
    /// Deliveries made (one per piece of mail and recipient).
    pub delivered: usize,
    /// Branches whose mail was left in the inbox because a turn runs on
    /// them (collecting for all branches only; naming a running branch in
    /// `to` is a 409).
    pub held: Vec<String>,
}

/// One state key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    /// The key.
    pub key: String,
    /// Its value.
    #[schema(value_type = Value)]
    pub value: Value,
    /// `session` (this session's log), `app` (shared by the sessions of
    /// its profile), `user` (shared by its owner's sessions) or `temp`
    /// (the running turn only).
    pub scope: String,
}

/// `PUT /api/v1/sessions/{id}/state/{key}`: the value, wrapped.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SetStateRequest {
    /// Any JSON value.
    #[schema(value_type = Value)]
    pub value: Value,
}

/// `GET /api/v1/sessions/{id}/messages` query (LionAGI `concat_messages`).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ConcatParams {
    /// Comma-separated branch ids or names (default: all branches).
    pub branches: Option<String>,
    /// Leave out messages cloned by a split.
    #[serde(alias = "excludeClone")]
    pub exclude_clone: bool,
    /// Leave out messages loaded into a branch rather than produced in it.
    #[serde(alias = "excludeLoad")]
    pub exclude_load: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weft_core::message::{ContentBlock, ImageSource, Usage};

    use super::*;

    /// The documented block shapes ([`ContentBlockDoc`]) accept every
    /// block weft-core writes, field for field (they deny unknown fields).
    #[test]
    fn documented_content_blocks_match_weft_core() {
        let blocks = [
            ContentBlock::text("a"),
            ContentBlock::Thinking {
                thinking: "t".into(),
                signature: Some("s".into()),
            },
            ContentBlock::ToolCall {
                id: "c1".into(),
                name: "read_file".into(),
                arguments: json!({"path": "x"}),
            },
            ContentBlock::ToolResult {
                call_id: "c1".into(),
                output: "o".into(),
                is_error: true,
            },
            ContentBlock::Image {
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "AA==".into(),
                },
            },
            ContentBlock::Image {
                source: ImageSource::Url {
                    url: "https://example.com/a.png".into(),
                },
            },
        ];
        for block in &blocks {
            // A new variant must be added here and to ContentBlockDoc.
            match block {
                ContentBlock::Text { .. }
                | ContentBlock::Thinking { .. }
                | ContentBlock::ToolCall { .. }
                | ContentBlock::ToolResult { .. }
                | ContentBlock::Image { .. } => {}
            }
            let wire = serde_json::to_value(block).expect("serialize");
            if let Err(e) = serde_json::from_value::<ContentBlockDoc>(wire.clone()) {
                panic!("{wire} does not match the documented ContentBlock: {e}");
            }
        }
        let usage = Usage {
            input_tokens: 1,
            output_tokens: 2,
            cache_read_tokens: 3,
            cache_creation_tokens: 4,
        };
        let wire = serde_json::to_value(usage).expect("serialize");
        if let Err(e) = serde_json::from_value::<MessageUsage>(wire.clone()) {
            panic!("{wire} does not match the documented MessageUsage: {e}");
        }
    }

    /// Parses a query string the way the `ApiQuery` extractor does.
    fn serde_urlencoded_like<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, String> {
        let uri: axum::http::Uri = format!("/x?{query}").parse().map_err(|e| format!("{e}"))?;
        axum::extract::Query::<T>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| e.body_text())
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let r: CleanupRequest =
            serde_json::from_value(json!({"olderThanDays": 7.0})).expect("7.0 is whole");
        assert_eq!(r.older_than_days, 7);
        let r: ForkRequest = serde_json::from_value(json!({"turn": 2.0, "seq": null})).expect("ok");
        assert_eq!((r.turn, r.seq), (Some(2), None));
        let r: ForkRequest = serde_json::from_value(json!({})).expect("ok");
        assert_eq!((r.turn, r.seq), (None, None));
        let huge = "99999999999999999999999999999";
        let q: TranscriptParams =
            serde_urlencoded_like(&format!("limit={huge}")).expect("a huge limit is all");
        assert_eq!(q.limit, Some(usize::MAX));
        let q: TranscriptParams = serde_urlencoded_like("limit=3").expect("ok");
        assert_eq!(q.limit, Some(3));
        for bad in ["limit=", "limit=-1", "limit=1.5"] {
            assert!(
                serde_urlencoded_like::<TranscriptParams>(bad).is_err(),
                "{bad}"
            );
        }
        for bad in [json!(7.5), json!(-1), json!("7")] {
            assert!(
                serde_json::from_value::<CleanupRequest>(json!({"olderThanDays": bad})).is_err(),
                "{bad}"
            );
        }
    }
}
