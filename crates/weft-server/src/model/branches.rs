//! Branches, mail between branches, keyed state and concatenated messages.

use super::*;

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
    /// Its system message (after a `System Time:` line when a time was
    /// stamped).
    pub system: Option<String>,
    /// Who sent its system message (default `system`).
    pub system_sender: Option<String>,
    /// The time stamped into its system message.
    pub system_datetime: Option<String>,
    /// Its owner.
    pub user: Option<String>,
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
            system_sender: branch.system_sender.clone(),
            system_datetime: branch.system_datetime.clone(),
            user: branch.user.clone(),
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
    /// Who sends its system message (LionAGI `system_sender`; default
    /// `system`).
    #[serde(default, alias = "system_sender")]
    pub system_sender: Option<String>,
    /// A time to stamp into its system message (LionAGI
    /// `system_datetime`): `true` for now (to the minute, UTC), `false`
    /// for none, or a string used as is.
    #[serde(default, alias = "system_datetime")]
    pub system_datetime: Option<SystemDatetimeParam>,
    /// Its owner (LionAGI `user`).
    #[serde(default)]
    pub user: Option<String>,
}

/// `systemDatetime`: `true`/`false` or the text to stamp.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SystemDatetimeParam {
    /// Stamp the current time (or not).
    Now(bool),
    /// Stamp this text.
    At(String),
}

impl From<SystemDatetimeParam> for weft_core::branches::SystemDatetime {
    fn from(p: SystemDatetimeParam) -> Self {
        match p {
            SystemDatetimeParam::Now(b) => Self::Now(b),
            SystemDatetimeParam::At(s) => Self::At(s),
        }
    }
}

/// `DELETE /api/v1/sessions/{id}/branches/{branch}` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct RemoveBranchParams {
    /// Delete it too (LionAGI `delete=True`): its messages leave every view
    /// and export (the log keeps them) and its undelivered mail is dropped.
    pub delete: bool,
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

/// `POST /api/v1/sessions/{id}/rewind`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewindRequest {
    /// How many turns to take back (default 1; `2` and `2.0` alike).
    #[serde(default = "one_turn", deserialize_with = "whole::number")]
    #[schema(minimum = 1, default = 1)]
    pub turns: u64,
    /// The branch (id or name; default: the session's default branch).
    #[serde(default)]
    #[schema(max_length = 100)]
    pub branch: Option<String>,
}

fn one_turn() -> u64 {
    1
}

/// What a rewind did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewindResponse {
    /// The branch rewound (its id).
    pub branch: String,
    /// The last seq that stays in its conversation.
    pub to_seq: u64,
    /// How many turns left it.
    pub turns: u64,
    /// How many messages left it (the log keeps them).
    pub messages: usize,
}
