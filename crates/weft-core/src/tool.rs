//! The [`Tool`] trait: something the model can ask the kernel to do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::approval::{self, ApprovalDecision, ApprovalDefault, ApprovalRequest, ApprovalSystem};
use crate::hooks::{HookRegistry, events};
use crate::id::{BranchId, SessionId};
use crate::provider::ToolSpec;

/// What a tool run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// Whether it worked.
    pub success: bool,
    /// Its output, for the model.
    pub output: String,
    /// The error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Structured data beside the text (the `task` tool's
    /// `{session_id, agent, response, status}`): not sent to the model,
    /// recorded on the tool message's metadata under
    /// [`crate::message::META_TOOL_DATA`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ToolOutput {
    /// A successful result.
    pub fn ok(output: impl Into<String>) -> Self {
        Self {
            success: true,
            output: output.into(),
            error: None,
            data: None,
        }
    }

    /// A failure.
    pub fn error(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            success: false,
            output: String::new(),
            error: Some(message),
            data: None,
        }
    }

    /// The same output carrying structured `data` (see [`ToolOutput::data`]).
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The text the model sees: the output, or the error.
    pub fn text_for_model(&self) -> String {
        match (&self.error, self.success) {
            (Some(e), false) if self.output.is_empty() => e.clone(),
            (Some(e), false) => format!("{}\n{e}", self.output),
            _ => self.output.clone(),
        }
    }
}

/// What the `task` tool asks of a [`Delegate`]: run `instruction` with
/// sub-agent `agent`, in a new child session or, with `session_id`, as the
/// next turn of an earlier child of the same parent and agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegateRequest {
    /// The sub-agent's name.
    pub agent: String,
    /// The complete instruction for it.
    pub instruction: String,
    /// The child session to continue (None: start a new one).
    pub session_id: Option<SessionId>,
}

/// How a delegated run ended, as the `task` tool reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelegateStatus {
    /// The sub-agent answered.
    Completed,
    /// The child session failed (`response` says why); it may be continued.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

impl DelegateStatus {
    /// The wire name (`completed`).
    pub fn as_str(&self) -> &'static str {
        match self {
            DelegateStatus::Completed => "completed",
            DelegateStatus::Failed => "failed",
            DelegateStatus::Cancelled => "cancelled",
        }
    }
}

/// What a delegated sub-session returned: the `task` tool's structured
/// result `{session_id, agent, response, status}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelegateOutcome {
    /// The child session's id (pass it back to continue the conversation).
    pub session_id: SessionId,
    /// The sub-agent that ran.
    pub agent: String,
    /// Its final answer.
    pub response: String,
    /// How the run ended.
    pub status: DelegateStatus,
}

/// Runs a prompt in a child session of a sub-agent (the `task` tool).
#[async_trait]
pub trait Delegate: Send + Sync {
    /// The agents that can be delegated to: `(name, description)`.
    fn agents(&self) -> Vec<(String, String)>;

    /// Runs the request's instruction in a new child session of its agent,
    /// or as the next turn of the child session it names (which must be a
    /// child of this session, made for the same agent). Errors are
    /// sentences for the model.
    async fn delegate(
        &self,
        request: DelegateRequest,
        cancel: CancellationToken,
    ) -> Result<DelegateOutcome, String>;
}

/// The keyed state of the session running a tool (agentkernel's
/// `session.get/set`, with the scopes of [`crate::state`]): what the
/// `state_get` / `state_set` tools read and write. Errors are sentences
/// for the model.
#[async_trait]
pub trait SessionState: Send + Sync {
    /// A key's value (None: unset).
    async fn get(&self, key: &str) -> Result<Option<Value>, String>;

    /// Sets a key (`None`: removes it).
    async fn set(&self, key: &str, value: Option<Value>) -> Result<(), String>;

    /// Every key the session sees.
    async fn all(&self) -> Result<serde_json::Map<String, Value>, String>;
}

/// Everything a tool run may use.
#[derive(Clone)]
pub struct ToolContext {
    /// The session running the tool.
    pub session_id: SessionId,
    /// Its branch.
    pub branch: BranchId,
    /// The tool call's id.
    pub call_id: String,
    /// The project directory (relative paths resolve against it).
    pub working_dir: PathBuf,
    /// Fires when the run must stop at once.
    pub cancel: CancellationToken,
    /// Where to ask for approval (fail-closed: `None` means deny).
    pub approval: Option<Arc<dyn ApprovalSystem>>,
    /// The session's hooks (for `approval:*` events).
    pub hooks: HookRegistry,
    /// How to start a sub-session, when the session allows it.
    pub delegate: Option<Arc<dyn Delegate>>,
    /// The session's keyed state, when the runtime offers it.
    pub state: Option<Arc<dyn SessionState>>,
}

impl ToolContext {
    /// The approval flow for an action of `subject` (a tool name), as every
    /// tool that asks uses it: emits `approval:required` on the session's
    /// hooks (a hook may deny), asks the session's approval system
    /// (fail-closed: none, an error, a timeout or a cancelled turn denies),
    /// and emits `approval:granted` or `approval:denied` with `event` plus
    /// the decision. `Ok(true)` means "allow always"; `Err` is the reason
    /// for a denial.
    pub async fn ask_approval(
        &self,
        subject: &str,
        prompt: String,
        event: Value,
        timeout: Duration,
    ) -> Result<bool, String> {
        let required = self
            .hooks
            .emit(events::APPROVAL_REQUIRED, event.clone())
            .await;
        let decision = if required.is_denied() {
            ApprovalDecision::Deny {
                reason: Some(format!(
                    "denied by a hook: {}",
                    required.reason.as_deref().unwrap_or("no reason given")
                )),
            }
        } else {
            let request = ApprovalRequest {
                session_id: Some(self.session_id.to_string()),
                subject: subject.into(),
                prompt,
                options: vec!["allow".into(), "allow_always".into(), "deny".into()],
                timeout,
                default: ApprovalDefault::Deny,
                details: event.clone(),
            };
            tokio::select! {
                d = approval::ask(self.approval.as_deref(), request) => d,
                _ = self.cancel.cancelled() => ApprovalDecision::Deny {
                    reason: Some("the turn was cancelled while waiting for approval".into()),
                },
            }
        };
        let mut outcome = event;
        match decision {
            ApprovalDecision::Allow | ApprovalDecision::AllowAlways => {
                let always = decision == ApprovalDecision::AllowAlways;
                outcome["decision"] = json!(if always { "allow_always" } else { "allow" });
                self.hooks.emit(events::APPROVAL_GRANTED, outcome).await;
                Ok(always)
            }
            ApprovalDecision::Deny { reason } => {
                let reason = reason.unwrap_or_else(|| "the user denied it".into());
                outcome["decision"] = json!("deny");
                outcome["reason"] = json!(reason);
                self.hooks.emit(events::APPROVAL_DENIED, outcome).await;
                Err(reason)
            }
        }
    }
}

/// Something the model can ask the kernel to do.
///
/// Contract: `execute` never panics on any input; it validates `input`
/// against its schema and reports problems as a failed [`ToolOutput`]; it
/// watches `ctx.cancel` and returns promptly when it fires. On an immediate
/// cancellation the orchestrator may also drop the `execute` future
/// mid-run, so a tool that starts processes or holds resources must release
/// them on drop.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &str;

    /// What it does, for the model.
    fn description(&self) -> &str;

    /// A JSON Schema for its input.
    fn input_schema(&self) -> Value;

    /// Runs it.
    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput;

    /// The spec sent to the model.
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().to_string(),
            description: self.description().to_string(),
            input_schema: self.input_schema(),
        }
    }
}
