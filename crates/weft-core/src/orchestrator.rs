//! Orchestrators: the loop that turns a prompt into an answer.
//!
//! [`LoopBasic`] (`loop-basic`) runs the tool-calling loop:
//! `prompt:submit` → append the user message → `provider:request` → stream
//! the response (`content_block:*`, `thinking:*`) → if the model asked for
//! tools: `tool:pre` (deny → a "Denied by hook: …" result; modify → new
//! input), run them **in parallel**, `tool:post` (modify may replace the
//! result) or `tool:error`, append the results **in call order**, and loop;
//! else append the final answer. Context a hook injects (`prompt:submit`,
//! `provider:request`, `tool:pre`, `tool:post`) is recorded and reaches the
//! model from then on, unless it is `ephemeral`: then it is added to the
//! next provider request only and never stored. `max_iterations` bounds the loop: when it
//! is reached, one last call is made without tools. `prompt:complete` and
//! `orchestrator:complete` are emitted on every exit path;
//! `execution:start`/`execution:end` around every turn are the runtime's
//! (whatever the orchestrator).
//!
//! With a [`TurnContext::response_format`] (structured output), every
//! request carries the format and the final answer is validated against
//! its schema: a valid one is stored with its value
//! ([`Message::structured`]); an invalid one is recorded, followed by one
//! repair prompt listing the errors (a user message marked
//! `structured_repair`), and the loop goes on; invalid again, the turn
//! fails with [`SessionError::StructuredOutput`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::join_all;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::approval::ApprovalSystem;
use crate::context::ContextManager;
use crate::error::SessionError;
use crate::hooks::{ContextInjection, HookAction, HookRegistry, InjectionRole, events};
use crate::id::{BranchId, SessionId, TurnId};
use crate::log::SessionLog;
use crate::message::{ContentBlock, Message, Role};
use crate::provider::{ChatRequest, ChatResponse, Provider, ProviderError, StreamEvent};
use crate::record::RecordKind;
use crate::structured::{ResponseFormat, repair_prompt};
use crate::tool::{Delegate, SessionState, Tool, ToolContext, ToolOutput};

/// The output given to the model for a tool call cancelled mid-run.
pub const TOOL_CANCELLED: &str =
    "cancelled: the user cancelled the turn before this tool call finished";

/// Cancellation of one turn.
///
/// `graceful` lets running tools finish and stops before the next provider
/// call; `immediate` also aborts the provider stream and running tools
/// (their calls get [`TOOL_CANCELLED`] results).
#[derive(Debug, Clone, Default)]
pub struct TurnCancel {
    /// Stop after the running tools.
    pub graceful: CancellationToken,
    /// Stop now.
    pub immediate: CancellationToken,
}

impl TurnCancel {
    /// Whether either kind of cancellation was requested.
    pub fn is_requested(&self) -> bool {
        self.graceful.is_cancelled() || self.immediate.is_cancelled()
    }
}

/// Everything an orchestrator needs for one turn.
#[derive(Clone)]
pub struct TurnContext {
    /// The session.
    pub session_id: SessionId,
    /// The turn's id (its records are stamped with it).
    pub turn: TurnId,
    /// The branch the turn runs on.
    pub branch: BranchId,
    /// The provider to call.
    pub provider: Arc<dyn Provider>,
    /// The model (None: the provider's default).
    pub model: Option<String>,
    /// The output budget per call.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// The system prompt sent with every call (not stored in the log).
    pub system: Option<String>,
    /// The tools available, by name.
    pub tools: Arc<BTreeMap<String, Arc<dyn Tool>>>,
    /// The branch's context manager.
    pub context: Arc<dyn ContextManager>,
    /// The session's hooks, scoped to the turn (its events carry `turn`
    /// and `branch`).
    pub hooks: HookRegistry,
    /// Where records go.
    pub log: SessionLog,
    /// The turn's cancellation.
    pub cancel: TurnCancel,
    /// The project directory, for tools.
    pub working_dir: PathBuf,
    /// The approval system, for tools.
    pub approval: Option<Arc<dyn ApprovalSystem>>,
    /// Sub-session delegation, for the task tool.
    pub delegate: Option<Arc<dyn Delegate>>,
    /// The session's keyed state, for the state tools.
    pub state: Option<Arc<dyn SessionState>>,
    /// The format the final answer must have (None: free text): sent with
    /// every provider call; the final answer is validated against it
    /// (one repair round-trip, then
    /// [`SessionError::StructuredOutput`]) and its value stored on the
    /// assistant message ([`Message::structured`]).
    pub response_format: Option<ResponseFormat>,
}

impl TurnContext {
    /// Appends messages to the log (after other writers' records unless
    /// they conflict with the turn: see [`SessionLog::append_for_turn`])
    /// and to the context.
    pub async fn record_messages(&self, messages: Vec<Message>) -> Result<(), SessionError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.log
            .append_for_turn(
                &self.turn,
                &self.branch,
                messages.iter().cloned().map(RecordKind::message).collect(),
            )
            .await?;
        for m in messages {
            self.context.add_message(m).await;
        }
        Ok(())
    }

    fn tool_context(&self, call_id: &str) -> ToolContext {
        ToolContext {
            session_id: self.session_id.clone(),
            branch: self.branch.clone(),
            call_id: call_id.to_string(),
            working_dir: self.working_dir.clone(),
            cancel: self.cancel.immediate.clone(),
            approval: self.approval.clone(),
            hooks: self.hooks.clone(),
            delegate: self.delegate.clone(),
            state: self.state.clone(),
        }
    }
}

/// Runs a prompt to its answer.
///
/// Contract: every message it produces is recorded through
/// [`TurnContext::record_messages`] before it returns; on cancellation it
/// returns [`SessionError::Cancelled`] with every started tool call answered
/// in the log.
#[async_trait]
pub trait Orchestrator: Send + Sync {
    /// Runs `prompt` on the turn's branch and returns the final text.
    async fn execute(&self, prompt: String, turn: &TurnContext) -> Result<String, SessionError>;
}

/// `loop-basic`: the default tool-calling loop.
#[derive(Debug, Clone, Default)]
pub struct LoopBasic {
    /// The most provider calls with tools per prompt (None: unlimited).
    pub max_iterations: Option<u32>,
}

impl LoopBasic {
    /// A loop with an optional iteration bound.
    pub fn new(max_iterations: Option<u32>) -> Self {
        Self { max_iterations }
    }

    async fn run(&self, prompt: String, turn: &TurnContext) -> Result<String, SessionError> {
        let hooks = &turn.hooks;
        let submit = hooks
            .emit_with(
                events::PROMPT_SUBMIT,
                || json!({"prompt": prompt, "branch": turn.branch}),
            )
            .await;
        if submit.is_denied() {
            return Err(SessionError::Denied(
                submit.reason.unwrap_or_else(|| "no reason given".into()),
            ));
        }
        let prompt = match (
            &submit.action,
            submit.data.as_ref().and_then(|d| d.get("prompt")),
        ) {
            (HookAction::Modify | HookAction::InjectContext, Some(Value::String(p))) => p.clone(),
            _ => prompt,
        };
        let mut user = Message::text(turn.branch.clone(), Role::User, prompt);
        user.sender = Some("user".into());
        let mut first = vec![user];
        let (stored, mut pending) = injection_messages(&turn.branch, &submit.injections);
        first.extend(stored);
        turn.record_messages(first).await?;

        let budget = {
            let info = turn.provider.info();
            info.context_window
                .saturating_sub(turn.max_tokens.unwrap_or(info.max_output_tokens) as usize)
                .max(1024)
        };
        let specs: Vec<_> = turn.tools.values().map(|t| t.spec()).collect();
        let mut iteration: u32 = 0;
        let mut repaired = false;
        loop {
            if turn.cancel.is_requested() {
                return Err(SessionError::Cancelled);
            }
            iteration += 1;
            let last_call = self.max_iterations.is_some_and(|max| iteration > max);
            // The view shares the context's list; ephemeral context (this
            // request only) goes into a copy of it.
            let system = turn.system.as_deref().map(|s| (&turn.branch, s));
            let mut messages = turn.context.request_view(budget, hooks, system).await;
            messages.extend(pending.drain(..).map(Arc::new));
            let request = ChatRequest {
                messages,
                tools: if last_call { Vec::new() } else { specs.clone() },
                model: turn.model.clone(),
                max_tokens: turn.max_tokens,
                temperature: turn.temperature,
                response_format: turn.response_format.clone(),
                ..ChatRequest::default()
            };
            let response = self.call_provider(request, iteration, turn).await?;
            let mut assistant = Message::new(
                turn.branch.clone(),
                Role::Assistant,
                response.content.clone(),
            );
            assistant.usage = Some(response.usage);
            assistant.model = response.model.clone();
            assistant.sender = Some(turn.branch.to_string());
            let calls: Vec<(String, String, Value)> = assistant
                .tool_calls()
                .into_iter()
                .map(|(id, name, args)| (id.to_string(), name.to_string(), args.clone()))
                .collect();
            let text = assistant.text_content();
            let finished = calls.is_empty() || last_call;
            let checked = match &turn.response_format {
                Some(format) if finished => Some(format.parse_answer(&text)),
                _ => None,
            };
            if let Some(Ok(value)) = &checked {
                assistant.structured = Some(value.clone());
            }
            turn.record_messages(vec![assistant]).await?;
            match checked {
                // One repair round-trip: the errors go back to the model.
                Some(Err(errors)) if !repaired => {
                    repaired = true;
                    let mut repair =
                        Message::text(turn.branch.clone(), Role::User, repair_prompt(&errors));
                    repair.sender = Some("weft".into());
                    repair
                        .metadata
                        .insert("structured_repair".into(), Value::Bool(true));
                    turn.record_messages(vec![repair]).await?;
                    continue;
                }
                Some(Err(errors)) => return Err(SessionError::StructuredOutput { errors }),
                _ if finished => return Ok(text),
                _ => {}
            }
            pending = self.run_tools(calls, turn).await?;
            if turn.cancel.is_requested() {
                return Err(SessionError::Cancelled);
            }
        }
    }

    async fn call_provider(
        &self,
        mut request: ChatRequest,
        iteration: u32,
        turn: &TurnContext,
    ) -> Result<ChatResponse, SessionError> {
        let hooks = &turn.hooks;
        let info = turn.provider.info();
        let asked = hooks
            .emit_with(events::PROVIDER_REQUEST, || {
                json!({
                    "provider": info.name,
                    "model": request.model.clone().unwrap_or(info.default_model.clone()),
                    "message_count": request.messages.len(),
                    "tool_count": request.tools.len(),
                    "iteration": iteration,
                    "branch": turn.branch,
                })
            })
            .await;
        if !asked.injections.is_empty() {
            let (stored, ephemeral) = injection_messages(&turn.branch, &asked.injections);
            turn.record_messages(stored.clone()).await?;
            request
                .messages
                .extend(stored.into_iter().chain(ephemeral).map(Arc::new));
        }
        let result = self.stream_response(request, turn).await;
        match result {
            Ok(response) => {
                hooks
                    .emit_with(events::PROVIDER_RESPONSE, || {
                        json!({
                            "provider": info.name,
                            "model": response.model,
                            "usage": response.usage,
                            "stop_reason": response.stop_reason,
                            "branch": turn.branch,
                        })
                    })
                    .await;
                Ok(response)
            }
            Err(ProviderError::Cancelled) => Err(SessionError::Cancelled),
            Err(e) => {
                hooks
                    .emit_with(
                        events::PROVIDER_ERROR,
                        || json!({"provider": info.name, "error": e.to_string(), "branch": turn.branch}),
                    )
                    .await;
                Err(SessionError::Provider(e))
            }
        }
    }

    async fn stream_response(
        &self,
        request: ChatRequest,
        turn: &TurnContext,
    ) -> Result<ChatResponse, ProviderError> {
        let hooks = &turn.hooks;
        let cancel = turn.cancel.immediate.clone();
        let mut stream = tokio::select! {
            s = turn.provider.stream(request, cancel.child_token()) => s?,
            _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
        };
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
            };
            let Some(event) = event else {
                return Err(ProviderError::Stream {
                    provider: turn.provider.info().name,
                    message: "the stream ended without a complete response".into(),
                });
            };
            match event? {
                StreamEvent::BlockStart { index, kind } => {
                    hooks
                        .emit_with(
                            events::CONTENT_BLOCK_START,
                            || json!({"index": index, "block": kind, "branch": turn.branch}),
                        )
                        .await;
                }
                StreamEvent::TextDelta { index, text } => {
                    hooks
                        .emit_with(
                            events::CONTENT_BLOCK_DELTA,
                            || json!({"index": index, "delta": text, "kind": "text", "branch": turn.branch}),
                        )
                        .await;
                }
                StreamEvent::ThinkingDelta { index, text } => {
                    hooks
                        .emit_with(
                            events::THINKING_DELTA,
                            || json!({"index": index, "delta": text, "branch": turn.branch}),
                        )
                        .await;
                }
                StreamEvent::ToolArgumentsDelta { index, fragment } => {
                    hooks
                        .emit_with(
                            events::CONTENT_BLOCK_DELTA,
                            || json!({"index": index, "delta": fragment, "kind": "tool_arguments", "branch": turn.branch}),
                        )
                        .await;
                }
                StreamEvent::BlockEnd { index, block } => {
                    if let ContentBlock::Thinking { thinking, .. } = &block {
                        hooks
                            .emit_with(
                                events::THINKING_FINAL,
                                || json!({"index": index, "text": thinking, "branch": turn.branch}),
                            )
                            .await;
                    }
                    hooks
                        .emit_with(
                            events::CONTENT_BLOCK_END,
                            || json!({"index": index, "block": block, "branch": turn.branch}),
                        )
                        .await;
                }
                StreamEvent::Retry {
                    attempt,
                    delay,
                    reason,
                } => {
                    hooks
                        .emit_with(events::PROVIDER_RETRY, || {
                            json!({
                                "provider": turn.provider.info().name,
                                "attempt": attempt,
                                "delay_ms": delay.as_millis() as u64,
                                "reason": reason,
                            })
                        })
                        .await;
                }
                StreamEvent::Completed(response) => return Ok(response),
            }
        }
    }

    /// Runs the calls concurrently and records their results in call order
    /// (and the context hooks injected); returns the ephemeral context for
    /// the next request.
    async fn run_tools(
        &self,
        calls: Vec<(String, String, Value)>,
        turn: &TurnContext,
    ) -> Result<Vec<Message>, SessionError> {
        let runs = calls
            .iter()
            .map(|(id, name, args)| run_one_tool(id, name, args.clone(), turn));
        let outcomes = join_all(runs).await;
        let mut messages = Vec::with_capacity(outcomes.len() + 1);
        let mut injections = Vec::new();
        for ((id, _, _), outcome) in calls.iter().zip(outcomes) {
            let mut m = Message::new(
                turn.branch.clone(),
                Role::Tool,
                vec![ContentBlock::ToolResult {
                    call_id: id.clone(),
                    output: outcome.output.text_for_model(),
                    is_error: !outcome.output.success,
                }],
            );
            if outcome.synthetic {
                m.metadata
                    .insert(crate::message::META_SYNTHETIC.into(), Value::Bool(true));
            }
            if let Some(data) = outcome.output.data {
                m.metadata
                    .insert(crate::message::META_TOOL_DATA.into(), data);
            }
            messages.push(m);
            injections.extend(outcome.injections);
        }
        let (stored, ephemeral) = injection_messages(&turn.branch, &injections);
        messages.extend(stored);
        turn.record_messages(messages).await?;
        Ok(ephemeral)
    }
}

/// The messages for a fold's injections: `(stored, ephemeral)`, each run of
/// one role joined into one message. Injected messages are marked
/// `injected` (and `ephemeral`) in their metadata and sent by `hook`.
fn injection_messages(
    branch: &BranchId,
    injections: &[ContextInjection],
) -> (Vec<Message>, Vec<Message>) {
    let group = |ephemeral: bool| {
        let mut runs: Vec<(InjectionRole, Vec<&str>)> = Vec::new();
        for i in injections.iter().filter(|i| i.ephemeral == ephemeral) {
            match runs.last_mut() {
                Some((role, texts)) if *role == i.role => texts.push(&i.text),
                _ => runs.push((i.role, vec![&i.text])),
            }
        }
        runs.into_iter()
            .map(|(role, texts)| {
                let role = match role {
                    InjectionRole::System => Role::System,
                    InjectionRole::User => Role::User,
                    InjectionRole::Assistant => Role::Assistant,
                };
                let mut m = Message::text(branch.clone(), role, texts.join("\n\n"));
                m.sender = Some("hook".into());
                m.metadata.insert("injected".into(), Value::Bool(true));
                if ephemeral {
                    m.metadata.insert("ephemeral".into(), Value::Bool(true));
                }
                m
            })
            .collect::<Vec<_>>()
    };
    (group(false), group(true))
}

struct ToolOutcome {
    output: ToolOutput,
    synthetic: bool,
    injections: Vec<ContextInjection>,
}

async fn run_one_tool(id: &str, name: &str, input: Value, turn: &TurnContext) -> ToolOutcome {
    let hooks = &turn.hooks;
    let pre = hooks
        .emit_with(
            events::TOOL_PRE,
            || json!({"tool_name": name, "tool_input": input, "call_id": id, "branch": turn.branch}),
        )
        .await;
    if pre.is_denied() {
        let reason = pre.reason.unwrap_or_else(|| "no reason given".into());
        return ToolOutcome {
            output: ToolOutput::error(format!("Denied by hook: {reason}")),
            synthetic: false,
            injections: Vec::new(),
        };
    }
    let input = match pre.action {
        HookAction::Modify | HookAction::InjectContext => pre
            .data
            .as_ref()
            .and_then(|d| d.get("tool_input"))
            .cloned()
            .unwrap_or(input),
        _ => input,
    };
    let mut injections = pre.injections;
    let Some(tool) = turn.tools.get(name).cloned() else {
        let known: Vec<&str> = turn.tools.keys().map(String::as_str).collect();
        let error = format!(
            "unknown tool {name:?}: the available tools are {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
        hooks
            .emit_with(
                events::TOOL_ERROR,
                || json!({"tool_name": name, "call_id": id, "error": error, "branch": turn.branch}),
            )
            .await;
        return ToolOutcome {
            output: ToolOutput::error(error),
            synthetic: false,
            injections,
        };
    };
    let ctx = turn.tool_context(id);
    let cancel = turn.cancel.immediate.clone();
    let output = tokio::select! {
        // Cancellation wins over a tool that notices it at the same moment:
        // an immediately cancelled call is always answered as cancelled.
        biased;
        _ = cancel.cancelled() => {
            return ToolOutcome { output: ToolOutput::error(TOOL_CANCELLED), synthetic: true, injections };
        }
        out = tool.execute(input.clone(), &ctx) => out,
    };
    let output = if output.success {
        let post = hooks
            .emit_with(events::TOOL_POST, || {
                json!({
                    "tool_name": name, "tool_input": input, "call_id": id,
                    "result": output, "branch": turn.branch,
                })
            })
            .await;
        injections.extend(post.injections);
        match post.action {
            HookAction::Deny => ToolOutput::error(format!(
                "Denied by hook: {}",
                post.reason.unwrap_or_else(|| "no reason given".into())
            )),
            HookAction::Modify => post
                .data
                .as_ref()
                .and_then(|d| d.get("result"))
                .and_then(|r| serde_json::from_value::<ToolOutput>(r.clone()).ok())
                .unwrap_or(output),
            _ => output,
        }
    } else {
        hooks
            .emit_with(events::TOOL_ERROR, || {
                json!({
                    "tool_name": name, "tool_input": input, "call_id": id,
                    "error": output.error, "branch": turn.branch,
                })
            })
            .await;
        output
    };
    ToolOutcome {
        output,
        synthetic: false,
        injections,
    }
}

#[async_trait]
impl Orchestrator for LoopBasic {
    async fn execute(&self, prompt: String, turn: &TurnContext) -> Result<String, SessionError> {
        let hooks = &turn.hooks;
        let result = self.run(prompt, turn).await;
        let status = match &result {
            Ok(_) => "completed",
            Err(e) if e.is_cancelled() => "cancelled",
            Err(_) => "failed",
        };
        let response = result.as_ref().ok().cloned();
        hooks
            .emit_with(
                events::PROMPT_COMPLETE,
                || json!({"response": response, "status": status, "branch": turn.branch}),
            )
            .await;
        hooks
            .emit_with(
                events::ORCHESTRATOR_COMPLETE,
                || json!({"orchestrator": "loop-basic", "status": status, "branch": turn.branch}),
            )
            .await;
        result
    }
}
