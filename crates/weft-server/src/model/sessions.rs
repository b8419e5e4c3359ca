//! Sessions: their info, create/update/fail/fork/cleanup/delete bodies,
//! list and transcript queries and the multitask policy.

use weft_core::settings::SettingsOverrides;

use super::*;

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
    /// The session that delegated to it (agent children only; a fork has
    /// none, its lineage is `forkedFrom`).
    pub parent_session_id: Option<String>,
    /// The root session of its delegation tree.
    pub trace_id: String,
    /// `created`, `active`, `completed`, `failed`, `terminated` or
    /// `ended_uncleanly`.
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
    /// Whether a turn is running on it: in this server, or in another
    /// process sharing the store (another node, a CLI: its turn lock is
    /// live). Only active sessions run turns.
    pub running: bool,
    /// Whether it is active but nobody runs it: a turn's process stopped
    /// mid-turn (its turn lock, or lease, was left to expire) and no turn
    /// runs now. The next turn repairs the history; `weft session cleanup`
    /// ends such a session.
    pub interrupted: bool,
    /// Prompts waiting for the running turn (`?multitask=enqueue`).
    pub queued: usize,
    /// The profile settings its creation overrode (`settings_overrides`),
    /// as applied to every turn; null when none.
    pub settings_overrides: Option<AppliedSettings>,
    /// Free-form metadata.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// The profile settings a session overrides (the keys of a create's
/// `settings_overrides`, each optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppliedSettings {
    /// The model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider module (`provider-openai`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// The output budget per model call.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_tokens: Option<u64>,
    /// The system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The tool modules mounted (an allow-list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

impl From<SettingsOverrides> for AppliedSettings {
    fn from(o: SettingsOverrides) -> Self {
        Self {
            model: o.model,
            provider: o.provider,
            temperature: o.temperature,
            max_tokens: o.max_tokens,
            system_prompt: o.system_prompt,
            tools: o.tools,
        }
    }
}

/// A create's `settings_overrides`: settings on top of the profile. Any
/// other key is refused (422 naming every unknown key); a bad value is a
/// 422 naming its key; `null` leaves a setting alone. (The schema only:
/// the route reads the object with `weft_core::settings`, which names
/// every unknown key at once.)
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SettingsOverridesRequest {
    /// The model the provider talks to.
    #[schema(min_length = 1, pattern = "\\S")]
    pub model: Option<String>,
    /// A provider module (`provider-openai`) or its short name (`openai`);
    /// it must be one this daemon has.
    #[schema(min_length = 1, pattern = "\\S")]
    pub provider: Option<String>,
    /// The sampling temperature.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// The output budget per model call.
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_tokens: Option<u64>,
    /// `max_tokens`, camelCase.
    #[serde(rename = "maxTokens")]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_tokens_camel: Option<u64>,
    /// The system prompt.
    pub system_prompt: Option<String>,
    /// `system_prompt`, camelCase.
    #[serde(rename = "systemPrompt")]
    pub system_prompt_camel: Option<String>,
    /// The tool modules to mount, replacing the profile's (an allow-list;
    /// `[]`: no tools). Each must be one this daemon has.
    pub tools: Option<Vec<String>>,
    /// The model settings nested (`{"llm": {"model": …}}`), as older
    /// clients send them.
    pub llm: Option<LlmOverridesRequest>,
}

/// `settings_overrides.llm`: the model settings, nested.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LlmOverridesRequest {
    /// The model.
    #[schema(min_length = 1, pattern = "\\S")]
    pub model: Option<String>,
    /// The provider module or its short name.
    #[schema(min_length = 1, pattern = "\\S")]
    pub provider: Option<String>,
    /// The sampling temperature.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// The output budget per model call.
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_tokens: Option<u64>,
}

impl SessionInfo {
    /// The API view of `meta`; `root` is the server's project directory.
    /// `interrupted` is left false (the caller sets it from the store's
    /// turn locks).
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
            interrupted: false,
            queued,
            settings_overrides: SettingsOverrides::recorded(&meta.metadata).map(Into::into),
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
    /// The profile. Default: the `default_profile` the directory's
    /// `.weft/config.toml`, `.amplified/metadata.json` or
    /// `.amplifier/settings.yaml` names, else the server's.
    #[serde(alias = "profile_name")]
    pub profile_name: Option<String>,
    /// A parent session (it must exist).
    #[serde(alias = "parent_session_id")]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub parent_session_id: Option<String>,
    /// Settings on top of the profile (model, provider, temperature, max
    /// tokens, system prompt, tools), applied to every turn and shown as
    /// the session's `settingsOverrides`.
    #[serde(alias = "settings_overrides")]
    #[schema(value_type = Option<SettingsOverridesRequest>)]
    pub settings_overrides: Option<Value>,
    /// A name (at most 50 characters, `weft_core::session::MAX_NAME_CHARS`).
    #[schema(max_length = 50)]
    pub name: Option<String>,
    /// A description.
    pub description: Option<String>,
}

/// `PATCH /api/v1/sessions/{id}`: an empty string clears a field.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct UpdateSessionRequest {
    /// New name (at most 50 characters, `weft_core::session::MAX_NAME_CHARS`).
    #[schema(max_length = 50)]
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
    /// A name for the new session (at most 50 characters,
    /// `weft_core::session::MAX_NAME_CHARS`).
    #[schema(max_length = 50)]
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
    /// Only this status: `created`, `active`, `completed`, `failed`,
    /// `terminated` or `ended_uncleanly`.
    #[param(value_type = Option<String>, pattern = "^(created|active|completed|failed|terminated|ended_uncleanly)$")]
    pub status: Option<SessionStatus>,
    /// Only this profile.
    #[serde(alias = "profileName")]
    pub profile_name: Option<String>,
    /// Only this project (its slug).
    pub project: Option<String>,
    /// Names containing this text (case-insensitive).
    pub name: Option<String>,
    /// `true`: only sessions that are not another session's sub-session
    /// (the roots of the session tree; their children are listed by
    /// `GET /api/v1/sessions/{id}/children`).
    #[serde(alias = "topLevel")]
    pub top_level: Option<bool>,
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
    /// Also delete its delegated sub-sessions (forks are sessions of their
    /// own and stay).
    #[serde(alias = "withChildren")]
    pub with_children: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
