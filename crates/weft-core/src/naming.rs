//! `hooks-session-naming`: names a session from its first exchange.
//!
//! After a turn completes on a session that has no name (the user did not
//! give one), the hook asks the session's provider — the preferred one —
//! for a title of the conversation so far (its first prompt and answer),
//! makes a name of it ([`crate::session::clip_name`]: one line, at most
//! [`MAX_NAME_CHARS`] characters) and sets it, unless a name was set in the
//! meantime (checked and written atomically). The request is marked with
//! [`PURPOSE_SESSION_TITLE`]; a provider that does not answer such
//! requests ([`Provider::answers`]: the scripted provider unless its script
//! has a `title`) leaves naming off. Sub-sessions (delegated to an agent)
//! are not named.
//!
//! The provider call runs in the background, so the turn's answer is not
//! held up; `session:end` waits for it (at most [`NAMING_TIMEOUT`]), so a
//! one-shot `weft run` still names its session. It is tried once per
//! session object. A failure (the provider errs, an empty title, the
//! store refuses) is logged as a warning and never fails the turn.
//!
//! It knows the hook, provider and store contracts, not the module
//! registry (which mounts it: `hooks-session-naming`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hooks::{HookError, HookHandler, HookResult, events};
use crate::id::SessionId;
use crate::message::{Message, Role};
use crate::provider::{ChatRequest, PURPOSE_SESSION_TITLE, Provider};
use crate::record::{MetaPatch, RecordKind};
use crate::session::{MAX_NAME_CHARS, clip_name};
use crate::store::{Store, append_at_head};

/// The module name.
pub const MODULE: &str = "hooks-session-naming";

/// The longest the title request (and the wait for it at `session:end`)
/// may take.
pub const NAMING_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of the first prompt and answer the title request shows the
/// model, in characters each.
const EXCERPT_CHARS: usize = 2000;

/// The session's providers, in preference order, filled in by the runtime
/// once they are mounted (hook modules are mounted before providers). Cheap
/// to clone; clones share the list.
#[derive(Clone, Default)]
pub struct ProviderSlot(Arc<OnceLock<Vec<Arc<dyn Provider>>>>);

impl ProviderSlot {
    /// The providers (empty until the session has mounted them).
    pub fn get(&self) -> &[Arc<dyn Provider>] {
        self.0.get().map(Vec::as_slice).unwrap_or_default()
    }

    /// Fills the slot (the first call wins).
    pub fn fill(&self, providers: Vec<Arc<dyn Provider>>) {
        let _ = self.0.set(providers);
    }
}

/// The `hooks-session-naming` handler.
pub struct NamingHook {
    store: Arc<dyn Store>,
    session_id: SessionId,
    providers: ProviderSlot,
    tried: AtomicBool,
    pending: Mutex<Option<JoinHandle<()>>>,
}

impl NamingHook {
    /// The handler for session `session_id`, asking the first provider of
    /// `providers`.
    pub fn new(store: Arc<dyn Store>, session_id: SessionId, providers: ProviderSlot) -> Self {
        NamingHook {
            store,
            session_id,
            providers,
            tried: AtomicBool::new(false),
            pending: Mutex::new(None),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the title request when the session wants a name.
    async fn after_turn(&self, data: &Value) {
        if data.get("status").and_then(Value::as_str) != Some("completed")
            || self.tried.load(Ordering::SeqCst)
        {
            return;
        }
        let Some(provider) = self.providers.get().first().cloned() else {
            return;
        };
        if !provider.answers(PURPOSE_SESSION_TITLE) {
            self.tried.store(true, Ordering::SeqCst);
            tracing::debug!(session = %self.session_id, provider = %provider.info().name, "the provider does not answer title requests; session naming is off");
            return;
        }
        let view = match self.store.view(&self.session_id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(session = %self.session_id, error = %e, "cannot name the session: cannot read it");
                return;
            }
        };
        if view.meta.name.is_some() || view.meta.agent_name.is_some() {
            self.tried.store(true, Ordering::SeqCst);
            return;
        }
        let messages = view.messages(view.meta.default_branch.as_str());
        let Some(request) = title_request(&messages) else {
            // No exchange yet (a turn on another branch).
            return;
        };
        self.tried.store(true, Ordering::SeqCst);
        let store = self.store.clone();
        let id = self.session_id.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = name_session(store, &id, provider, request).await {
                tracing::warn!(session = %id, error = %e, "cannot name the session from its first exchange");
            }
        });
        *self.pending() = Some(task);
    }

    /// Waits for a title request still running.
    async fn finish(&self) {
        let task = self.pending().take();
        if let Some(task) = task
            && tokio::time::timeout(NAMING_TIMEOUT, task).await.is_err()
        {
            tracing::warn!(session = %self.session_id, "naming the session took too long; it stays unnamed");
        }
    }
}

/// The request asking for a title of the exchange in `messages` (its
/// first user prompt and the first answer after it); None before there
/// is one.
fn title_request(messages: &[&Message]) -> Option<ChatRequest> {
    let first = messages.iter().position(|m| m.role == Role::User)?;
    let prompt = messages[first].text_content();
    let answer = messages[first + 1..]
        .iter()
        .take_while(|m| m.role != Role::User)
        .filter(|m| m.role == Role::Assistant)
        .map(|m| m.text_content())
        .filter(|t| !t.trim().is_empty())
        .last()
        .unwrap_or_default();
    if prompt.trim().is_empty() || answer.trim().is_empty() {
        return None;
    }
    let excerpt = |s: &str| s.chars().take(EXCERPT_CHARS).collect::<String>();
    let branch = messages[first].branch.clone();
    let system = format!(
        "You name conversations. Reply with only a short title for the conversation below: \
         at most {MAX_NAME_CHARS} characters, plain words, no quotes, no trailing period."
    );
    let user = format!(
        "User:\n{}\n\nAssistant:\n{}",
        excerpt(&prompt),
        excerpt(&answer)
    );
    Some(ChatRequest {
        messages: vec![
            Message::text(branch.clone(), Role::System, system),
            Message::text(branch, Role::User, user),
        ]
        .into(),
        max_tokens: Some(64),
        purpose: Some(PURPOSE_SESSION_TITLE.into()),
        ..ChatRequest::default()
    })
}

/// Asks `provider` for the title and sets it as the name of `id` unless
/// the session has a name by then.
async fn name_session(
    store: Arc<dyn Store>,
    id: &SessionId,
    provider: Arc<dyn Provider>,
    request: ChatRequest,
) -> Result<(), String> {
    let cancel = CancellationToken::new();
    let response = tokio::time::timeout(NAMING_TIMEOUT, provider.complete(request, cancel))
        .await
        .map_err(|_| format!("the provider gave no title within {NAMING_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let text = Message::new(Default::default(), Role::Assistant, response.content).text_content();
    let name = clip_name(&text).ok_or("the provider's title was empty")?;
    append_at_head(store.as_ref(), id, |meta| {
        Ok(if meta.name.is_some() {
            Vec::new()
        } else {
            vec![RecordKind::Meta(MetaPatch {
                name: Some(name.clone()),
                ..MetaPatch::default()
            })]
        })
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

#[async_trait]
impl HookHandler for NamingHook {
    async fn handle(&self, event: &str, data: &Value) -> Result<HookResult, HookError> {
        match event {
            events::EXECUTION_END => self.after_turn(data).await,
            events::SESSION_END => self.finish().await,
            _ => {}
        }
        Ok(HookResult::proceed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BranchId;

    #[test]
    fn asks_about_the_first_exchange() {
        let b = BranchId::main();
        let user = Message::text(b.clone(), Role::User, "fix the parser");
        let answer = Message::text(b.clone(), Role::Assistant, "done: fixed it");
        let later = Message::text(b.clone(), Role::User, "now the lexer");
        assert!(title_request(&[&user]).is_none());
        let r = title_request(&[&user, &answer, &later]).unwrap();
        assert_eq!(r.purpose.as_deref(), Some(PURPOSE_SESSION_TITLE));
        let asked = r.messages[1].text_content();
        assert!(asked.contains("fix the parser") && asked.contains("fixed it"));
        assert!(!asked.contains("lexer"));
        assert!(r.messages[0].text_content().contains("50 characters"));
    }
}
