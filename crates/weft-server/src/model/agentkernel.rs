//! agentkernel's `/run` and `/chat`, profiles, agents and health.

use super::*;

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
    /// A profile name, or a sub-agent of the default profile (the built-in
    /// `assistant` included); honoured on every call, so agents take turns
    /// in one session. Leave out: the session's own plan.
    pub agent: Option<String>,
    /// The prompt (or `prompt`).
    pub message: Option<String>,
    /// The prompt (or `message`).
    pub prompt: Option<String>,
    /// The session to continue, or to create with this id.
    #[serde(alias = "sessionId")]
    #[schema(pattern = "^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")]
    pub session_id: Option<String>,
    /// Structured output: the answer must be JSON valid against this JSON
    /// Schema (or `{name, schema, strict}`), returned as `structured`. An
    /// invalid schema is a 422; an answer still invalid after one repair,
    /// a 502.
    #[serde(alias = "responseFormat")]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
}

/// agentkernel's `POST /api/v1/chat`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct ChatRequest {
    /// The prompt (not blank).
    #[schema(value_type = String, required = true, pattern = "\\S")]
    pub prompt: Option<String>,
    /// A profile name, or a sub-agent of the default profile (the built-in
    /// `assistant` included); honoured on every call.
    pub agent: Option<String>,
    /// The session to continue, or to create with this id.
    #[serde(alias = "sessionId")]
    #[schema(pattern = "^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")]
    pub session_id: Option<String>,
    /// Structured output, as `/run`'s `response_format`.
    #[serde(alias = "responseFormat")]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
}

/// agentkernel's answer (its own snake_case shape).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunResponse {
    /// The final answer.
    pub result: String,
    /// The session it ran in.
    pub session_id: String,
    /// The validated JSON answer (a run with a `response_format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub structured: Option<Value>,
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
