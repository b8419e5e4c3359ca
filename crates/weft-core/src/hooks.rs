//! The hook registry: the kernel's events and the handlers that observe or
//! steer them.
//!
//! Handlers register for one event name (or [`ALL_EVENTS`], `*`) with a
//! priority; lower priorities run first, equal priorities in registration
//! order. [`HookRegistry::emit`] merges the default fields (`session_id`,
//! `parent_id`, `timestamp`, and a scoped registry's `turn` and `branch`)
//! into the event data, publishes the event to the session's
//! [`Feed`] (when one is set), runs the handlers and folds
//! their results with Amplifier's precedence:
//! `deny > ask_user > inject_context > modify > continue`.
//!
//! - `deny` stops the chain at once.
//! - `modify` replaces the data the next handlers see (modifications chain).
//! - `inject_context` texts are collected, in handler order, with their
//!   role (`context_injection_role`) and whether they are `ephemeral`
//!   (given to the model for the next provider call only, never stored);
//!   the folded result lists them in `injections`.
//! - `ask_user` goes to the approval system, fail-closed
//!   ([`crate::approval::ask`]): only an explicit allow lets the event
//!   proceed.
//! - A handler that fails is logged and skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::approval::{ApprovalDefault, ApprovalRequest, ApprovalSystem, ask};
use crate::feed::Feed;

/// The canonical kernel event names.
pub mod events {
    /// A session ran its first prompt.
    pub const SESSION_START: &str = "session:start";
    /// A session ended (cleanup).
    pub const SESSION_END: &str = "session:end";
    /// A child session was made from a parent.
    pub const SESSION_FORK: &str = "session:fork";
    /// A stored session ran its first prompt in this process.
    pub const SESSION_RESUME: &str = "session:resume";
    /// A prompt was submitted.
    pub const PROMPT_SUBMIT: &str = "prompt:submit";
    /// A prompt's answer is complete.
    pub const PROMPT_COMPLETE: &str = "prompt:complete";
    /// A request is about to go to the provider.
    pub const PROVIDER_REQUEST: &str = "provider:request";
    /// The provider answered.
    pub const PROVIDER_RESPONSE: &str = "provider:response";
    /// The provider call is being retried.
    pub const PROVIDER_RETRY: &str = "provider:retry";
    /// The provider call failed.
    pub const PROVIDER_ERROR: &str = "provider:error";
    /// A content block started streaming.
    pub const CONTENT_BLOCK_START: &str = "content_block:start";
    /// A piece of a content block arrived.
    pub const CONTENT_BLOCK_DELTA: &str = "content_block:delta";
    /// A content block is complete.
    pub const CONTENT_BLOCK_END: &str = "content_block:end";
    /// A piece of thinking arrived.
    pub const THINKING_DELTA: &str = "thinking:delta";
    /// A thinking block is complete.
    pub const THINKING_FINAL: &str = "thinking:final";
    /// A tool is about to run (deny blocks it; modify changes its input).
    pub const TOOL_PRE: &str = "tool:pre";
    /// A tool finished (modify replaces its result).
    pub const TOOL_POST: &str = "tool:post";
    /// A tool failed.
    pub const TOOL_ERROR: &str = "tool:error";
    /// The context is about to be compacted.
    pub const CONTEXT_PRE_COMPACT: &str = "context:pre_compact";
    /// The context was compacted.
    pub const CONTEXT_POST_COMPACT: &str = "context:post_compact";
    /// The orchestrator finished a prompt.
    pub const ORCHESTRATOR_COMPLETE: &str = "orchestrator:complete";
    /// An execution (one prompt) started.
    pub const EXECUTION_START: &str = "execution:start";
    /// An execution ended, on every exit path.
    pub const EXECUTION_END: &str = "execution:end";
    /// An approval is needed.
    pub const APPROVAL_REQUIRED: &str = "approval:required";
    /// An approval was granted.
    pub const APPROVAL_GRANTED: &str = "approval:granted";
    /// An approval was denied.
    pub const APPROVAL_DENIED: &str = "approval:denied";
    /// Cancellation was requested.
    pub const CANCEL_REQUESTED: &str = "cancel:requested";
    /// Cancellation completed.
    pub const CANCEL_COMPLETED: &str = "cancel:completed";
    /// A notification for the user.
    pub const USER_NOTIFICATION: &str = "user:notification";

    /// Every canonical event name.
    pub const ALL: &[&str] = &[
        SESSION_START,
        SESSION_END,
        SESSION_FORK,
        SESSION_RESUME,
        PROMPT_SUBMIT,
        PROMPT_COMPLETE,
        PROVIDER_REQUEST,
        PROVIDER_RESPONSE,
        PROVIDER_RETRY,
        PROVIDER_ERROR,
        CONTENT_BLOCK_START,
        CONTENT_BLOCK_DELTA,
        CONTENT_BLOCK_END,
        THINKING_DELTA,
        THINKING_FINAL,
        TOOL_PRE,
        TOOL_POST,
        TOOL_ERROR,
        CONTEXT_PRE_COMPACT,
        CONTEXT_POST_COMPACT,
        ORCHESTRATOR_COMPLETE,
        EXECUTION_START,
        EXECUTION_END,
        APPROVAL_REQUIRED,
        APPROVAL_GRANTED,
        APPROVAL_DENIED,
        CANCEL_REQUESTED,
        CANCEL_COMPLETED,
        USER_NOTIFICATION,
    ];
}

/// Register for this name to see every event.
pub const ALL_EVENTS: &str = "*";

/// What a handler wants done. Ordered by precedence, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookAction {
    /// Go on.
    Continue,
    /// Go on with changed data.
    Modify,
    /// Go on, and add text to the model's context.
    InjectContext,
    /// Ask the approval system first.
    AskUser,
    /// Stop.
    Deny,
}

/// The role an injected context message is given to the model with
/// (Amplifier's `context_injection_role`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionRole {
    /// A system message (the default).
    #[default]
    System,
    /// A user message.
    User,
    /// An assistant message.
    Assistant,
}

impl InjectionRole {
    fn is_system(&self) -> bool {
        *self == InjectionRole::System
    }
}

/// One handler's context injection, as an emit collects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextInjection {
    /// The text.
    pub text: String,
    /// The role it is given to the model with.
    #[serde(default)]
    pub role: InjectionRole,
    /// Whether it reaches the model for the next provider call only and is
    /// never stored.
    #[serde(default)]
    pub ephemeral: bool,
}

/// A handler's answer (and the folded answer of a whole emit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    /// What to do.
    pub action: HookAction,
    /// Why (for deny, shown to the model as "Denied by hook: …").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The replacement data (modify); after an emit, the final data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Text to add to the context (inject_context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_injection: Option<String>,
    /// The role the injected text is given with (inject_context; default
    /// `system`).
    #[serde(default, skip_serializing_if = "InjectionRole::is_system")]
    pub context_injection_role: InjectionRole,
    /// Whether the injection is for the next provider call only: it reaches
    /// the model once and is not stored in the session (inject_context).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// After an emit: every injection the handlers made, in handler order
    /// (the folded `context_injection` joins the stored ones' texts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injections: Vec<ContextInjection>,
    /// The question (ask_user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_prompt: Option<String>,
    /// The answers offered (ask_user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_options: Vec<String>,
    /// How long to wait (ask_user; default 300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_secs: Option<f64>,
    /// What a timeout means (ask_user).
    #[serde(default)]
    pub approval_default: ApprovalDefault,
    /// A message to show the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_message: Option<String>,
}

impl Default for HookResult {
    fn default() -> Self {
        Self {
            action: HookAction::Continue,
            reason: None,
            data: None,
            context_injection: None,
            context_injection_role: InjectionRole::System,
            ephemeral: false,
            injections: Vec::new(),
            approval_prompt: None,
            approval_options: Vec::new(),
            approval_timeout_secs: None,
            approval_default: ApprovalDefault::Deny,
            user_message: None,
        }
    }
}

impl HookResult {
    /// Go on.
    pub fn proceed() -> Self {
        Self::default()
    }

    /// Stop, with a reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            action: HookAction::Deny,
            reason: Some(reason.into()),
            ..Self::default()
        }
    }

    /// Go on with `data` instead.
    pub fn modify(data: Value) -> Self {
        Self {
            action: HookAction::Modify,
            data: Some(data),
            ..Self::default()
        }
    }

    /// Add `text` to the model's context.
    pub fn inject_context(text: impl Into<String>) -> Self {
        Self {
            action: HookAction::InjectContext,
            context_injection: Some(text.into()),
            ..Self::default()
        }
    }

    /// Add `text` to the model's context for the next provider call only,
    /// without storing it.
    pub fn inject_ephemeral(text: impl Into<String>) -> Self {
        Self {
            ephemeral: true,
            ..Self::inject_context(text)
        }
    }

    /// The same injection given to the model as `role`.
    pub fn with_role(mut self, role: InjectionRole) -> Self {
        self.context_injection_role = role;
        self
    }

    /// The injections of a folded result that are stored (not ephemeral).
    pub fn stored_injections(&self) -> impl Iterator<Item = &ContextInjection> {
        self.injections.iter().filter(|i| !i.ephemeral)
    }

    /// Ask the approval system `prompt` first.
    pub fn ask_user(prompt: impl Into<String>) -> Self {
        Self {
            action: HookAction::AskUser,
            approval_prompt: Some(prompt.into()),
            approval_options: vec!["allow".into(), "deny".into()],
            ..Self::default()
        }
    }

    /// Whether the action is deny.
    pub fn is_denied(&self) -> bool {
        self.action == HookAction::Deny
    }
}

/// A handler failure (logged and skipped by the registry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

/// Observes or steers kernel events.
///
/// Contract: return quickly (handlers run inline with the kernel); never
/// assume other handlers ran; an `Err` is logged and the handler skipped.
#[async_trait]
pub trait HookHandler: Send + Sync {
    /// Handles `event` with its `data` (a JSON object).
    async fn handle(&self, event: &str, data: &Value) -> Result<HookResult, HookError>;

    /// The answer of a handler that needs no waiting, given without the
    /// boxed future of [`HookHandler::handle`] (the registry calls it first
    /// and awaits `handle` only when it returns `None`, the default). A
    /// handler that overrides it must answer as `handle` would.
    fn handle_now(&self, _event: &str, _data: &Value) -> Option<Result<HookResult, HookError>> {
        None
    }
}

struct Registration {
    id: u64,
    event: String,
    priority: i32,
    name: String,
    handler: Arc<dyn HookHandler>,
}

impl Registration {
    fn sees(&self, event: &str) -> bool {
        self.event == event || self.event == ALL_EVENTS
    }
}

/// The registrations in the order they run, shared with the emits running
/// them: an emit takes the list with one reference count, registering
/// copies it (copy-on-write) when an emit still holds it.
type Handlers = Arc<Vec<Arc<Registration>>>;

#[derive(Default)]
struct Inner {
    handlers: RwLock<Handlers>,
    defaults: RwLock<Map<String, Value>>,
    approval: RwLock<Option<Arc<dyn ApprovalSystem>>>,
    feed: RwLock<Option<Feed>>,
    next_id: AtomicU64,
}

/// The set of registered handlers of one session (cheap to clone; clones
/// share the handlers).
///
/// A registry may be *scoped* ([`HookRegistry::scoped`]): a clone sharing
/// the handlers that adds fields of its own to every event it emits — how
/// a turn's events carry `turn` and `branch`.
#[derive(Clone, Default)]
pub struct HookRegistry {
    inner: Arc<Inner>,
    scope: Option<Arc<Map<String, Value>>>,
}

/// Unregisters its handler when [`HookHandle::unregister`] is called (not on
/// drop, so handles may be ignored).
#[derive(Clone)]
pub struct HookHandle {
    id: u64,
    registry: Weak<Inner>,
}

impl HookHandle {
    /// Removes the handler. Does nothing if it is already gone.
    pub fn unregister(&self) {
        if let Some(inner) = self.registry.upgrade() {
            Arc::make_mut(&mut write(&inner.handlers)).retain(|r| r.id != self.id);
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// The default approval timeout for `ask_user`.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

impl HookRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `event` (or [`ALL_EVENTS`]).
    pub fn register(
        &self,
        event: impl Into<String>,
        handler: Arc<dyn HookHandler>,
        priority: i32,
        name: impl Into<String>,
    ) -> HookHandle {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut guard = write(&self.inner.handlers);
        let handlers = Arc::make_mut(&mut guard);
        handlers.push(Arc::new(Registration {
            id,
            event: event.into(),
            priority,
            name: name.into(),
            handler,
        }));
        // Stable: equal priorities keep registration order.
        handlers.sort_by_key(|r| r.priority);
        HookHandle {
            id,
            registry: Arc::downgrade(&self.inner),
        }
    }

    /// Sets a default field merged into every event's data (unless the
    /// emitter set it).
    pub fn set_default(&self, key: impl Into<String>, value: Value) {
        write(&self.inner.defaults).insert(key.into(), value);
    }

    /// A registry sharing these handlers (and defaults, approval system
    /// and feed) whose events also carry `fields` (unless the emitter set
    /// them).
    pub fn scoped(&self, fields: Map<String, Value>) -> Self {
        let mut merged = self.scope.as_deref().cloned().unwrap_or_default();
        merged.extend(fields);
        Self {
            inner: self.inner.clone(),
            scope: Some(Arc::new(merged)),
        }
    }

    /// Sets the feed every emitted event is published to (before the
    /// handlers run, with the defaults merged in).
    pub fn set_feed(&self, feed: Option<Feed>) {
        *write(&self.inner.feed) = feed;
    }

    /// The feed events are published to, if one is set.
    pub fn feed(&self) -> Option<Feed> {
        read(&self.inner.feed).clone()
    }

    /// Sets the approval system `ask_user` results go to.
    pub fn set_approval(&self, approval: Option<Arc<dyn ApprovalSystem>>) {
        *write(&self.inner.approval) = approval;
    }

    /// The approval system, if one is set.
    pub fn approval(&self) -> Option<Arc<dyn ApprovalSystem>> {
        read(&self.inner.approval).clone()
    }

    /// The names of the handlers registered for `event` (not counting `*`),
    /// in the order they run.
    pub fn handler_names(&self, event: &str) -> Vec<String> {
        read(&self.inner.handlers)
            .iter()
            .filter(|r| r.event == event)
            .map(|r| r.name.clone())
            .collect()
    }

    /// Whether any handler would see `event`.
    pub fn has_handlers(&self, event: &str) -> bool {
        read(&self.inner.handlers).iter().any(|r| r.sees(event))
    }

    /// Whether an emit of `event` reaches anything: a handler that sees it,
    /// or the session's feed (followers in this process, the live channel
    /// to other processes, a parent session).
    pub fn observes(&self, event: &str) -> bool {
        read(&self.inner.feed)
            .as_ref()
            .is_some_and(Feed::is_observed)
            || self.has_handlers(event)
    }

    /// [`emit`](Self::emit) of a notification whose payload is built only
    /// when something [observes](Self::observes) `event`. Unobserved, it
    /// returns [`HookResult::default()`] (continue, no data) and builds
    /// nothing: a turn nobody watches does not pay for its token deltas'
    /// payloads.
    pub async fn emit_with(&self, event: &str, data: impl FnOnce() -> Value) -> HookResult {
        if !self.observes(event) {
            return HookResult::default();
        }
        self.emit(event, data()).await
    }

    /// Emits `event` and folds the handlers' results (see the module docs).
    /// The returned result's `data` is the final event data.
    pub async fn emit(&self, event: &str, data: Value) -> HookResult {
        let mut data = match data {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        if let Some(scope) = &self.scope {
            for (k, v) in scope.iter() {
                data.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        for (k, v) in read(&self.inner.defaults).iter() {
            data.entry(k.clone()).or_insert_with(|| v.clone());
        }
        data.entry("timestamp")
            .or_insert_with(|| Value::String(crate::clock::now_rfc3339()));
        let mut data = Value::Object(data);
        if let Some(feed) = read(&self.inner.feed).as_ref() {
            feed.event(event, &data);
        }

        // The chain as registered when the emit began (one reference
        // count; handlers registered meanwhile see the next emit).
        let chain: Handlers = read(&self.inner.handlers).clone();

        let mut modified = false;
        let mut injections: Vec<ContextInjection> = Vec::new();
        let mut ask_user: Option<HookResult> = None;
        let mut user_message: Option<String> = None;
        for registration in chain.iter().filter(|r| r.sees(event)) {
            let handler = &registration.handler;
            let answer = match handler.handle_now(event, &data) {
                Some(answer) => answer,
                None => handler.handle(event, &data).await,
            };
            let result = match answer {
                Ok(r) => r,
                Err(e) => {
                    let name = &registration.name;
                    tracing::warn!(hook = %name, event, error = %e, "hook handler failed; skipped");
                    continue;
                }
            };
            if result.user_message.is_some() {
                user_message.clone_from(&result.user_message);
            }
            match result.action {
                HookAction::Deny => {
                    return HookResult {
                        data: Some(data),
                        user_message,
                        ..result
                    };
                }
                HookAction::Modify => {
                    if let Some(new) = result.data {
                        data = new;
                        modified = true;
                    }
                }
                HookAction::InjectContext => {
                    if let Some(text) = result.context_injection {
                        injections.push(ContextInjection {
                            text,
                            role: result.context_injection_role,
                            ephemeral: result.ephemeral,
                        });
                    }
                }
                HookAction::AskUser => {
                    if ask_user.is_none() {
                        ask_user = Some(result);
                    }
                }
                HookAction::Continue => {}
            }
        }

        if let Some(ask_result) = ask_user {
            let approval = self.approval();
            let request = ApprovalRequest {
                session_id: data
                    .get("session_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                subject: event.to_string(),
                prompt: ask_result
                    .approval_prompt
                    .clone()
                    .unwrap_or_else(|| format!("Allow {event}?")),
                options: ask_result.approval_options.clone(),
                timeout: ask_result
                    .approval_timeout_secs
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
                default: ask_result.approval_default,
                details: data.clone(),
            };
            let decision = ask(approval.as_deref(), request).await;
            if !decision.is_allowed() {
                let reason = match decision {
                    crate::approval::ApprovalDecision::Deny { reason: Some(r) } => r,
                    _ => "denied by the user".to_string(),
                };
                return HookResult {
                    action: HookAction::Deny,
                    reason: Some(reason),
                    data: Some(data),
                    user_message,
                    ..HookResult::default()
                };
            }
        }
        let action = if !injections.is_empty() {
            HookAction::InjectContext
        } else if modified {
            HookAction::Modify
        } else {
            HookAction::Continue
        };
        let stored: Vec<&str> = injections
            .iter()
            .filter(|i| !i.ephemeral)
            .map(|i| i.text.as_str())
            .collect();
        let context_injection = (!stored.is_empty()).then(|| stored.join("\n\n"));
        HookResult {
            action,
            data: Some(data),
            context_injection,
            injections,
            user_message,
            ..HookResult::default()
        }
    }
}

/// A handler made from an async closure.
pub struct FnHook<F>(pub F);

#[async_trait]
impl<F, Fut> HookHandler for FnHook<F>
where
    F: Fn(String, Value) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<HookResult, HookError>> + Send,
{
    async fn handle(&self, event: &str, data: &Value) -> Result<HookResult, HookError> {
        (self.0)(event.to_string(), data.clone()).await
    }
}

/// A handler made from a closure that answers at once (no future to box
/// or await per event).
pub struct SyncHook<F>(pub F);

#[async_trait]
impl<F> HookHandler for SyncHook<F>
where
    F: Fn(&str, &Value) -> Result<HookResult, HookError> + Send + Sync,
{
    async fn handle(&self, event: &str, data: &Value) -> Result<HookResult, HookError> {
        (self.0)(event, data)
    }

    fn handle_now(&self, event: &str, data: &Value) -> Option<Result<HookResult, HookError>> {
        Some((self.0)(event, data))
    }
}

/// Wraps a closure that answers at once as a shareable handler (the
/// cheapest kind to dispatch).
pub fn hook_sync_fn<F>(f: F) -> Arc<dyn HookHandler>
where
    F: Fn(&str, &Value) -> Result<HookResult, HookError> + Send + Sync + 'static,
{
    Arc::new(SyncHook(f))
}

/// Wraps an async closure as a shareable handler.
pub fn hook_fn<F, Fut>(f: F) -> Arc<dyn HookHandler>
where
    F: Fn(String, Value) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<HookResult, HookError>> + Send + 'static,
{
    Arc::new(FnHook(f))
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
