//! Delegation to sub-agents (the `task` tool): a child session per task,
//! continued as a multi-turn conversation when the tool names it again.
//!
//! A child is a session of its own (its log, its feed, `parent_id` and
//! `agent_name` in its metadata, see [`Session::initialize`]); while it
//! runs, its kernel events are relayed to the parent's feed tagged with its
//! id ([`crate::feed::Feed::relay_events_to`]). Continuing a child resumes
//! the stored session and runs the instruction as its next turn; only a
//! child of this parent, made for the same agent, may be continued.
//!
//! It knows the runtime's session and config, nothing of the `task` tool's
//! wording or of front ends.

use std::sync::Weak;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{CancelMode, Inner, Session, SessionConfig};
use crate::id::SessionId;
use crate::store::StoreError;
use crate::tool::{Delegate, DelegateOutcome, DelegateRequest, DelegateStatus};

/// Delegation to sub-agents: a child session per task.
pub(super) struct RuntimeDelegate {
    pub(super) parent: Weak<Inner>,
}

#[async_trait]
impl Delegate for RuntimeDelegate {
    fn agents(&self) -> Vec<(String, String)> {
        self.parent
            .upgrade()
            .map(|p| {
                p.config
                    .plan
                    .agents
                    .iter()
                    .map(|(name, a)| (name.clone(), a.description.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn delegate(
        &self,
        request: DelegateRequest,
        cancel: CancellationToken,
    ) -> Result<DelegateOutcome, String> {
        let parent = self
            .parent
            .upgrade()
            .ok_or_else(|| "the parent session has ended".to_string())?;
        let agent = request.agent.as_str();
        let config = child_config(&parent, agent, request.session_id.as_ref()).await?;
        let child = Session::new(config);
        child.initialize().await.map_err(|e| e.to_string())?;
        let _relay = match (child.feed(), parent.feed()) {
            (Ok(child_feed), Some(parent_feed)) => {
                child_feed.relay_events_to(Some(parent_feed));
                Some(RelayGuard(child_feed.clone()))
            }
            _ => None,
        };
        let watcher = {
            let child = child.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                cancel.cancelled().await;
                child.cancel(CancelMode::Immediate).await;
            })
        };
        let result = child.execute(&request.instruction).await;
        watcher.abort();
        let session_id = child.id().clone();
        let (status, response) = match result {
            Ok(text) => {
                child.cleanup().await.map_err(|e| e.to_string())?;
                (DelegateStatus::Completed, text)
            }
            Err(e) if cancel.is_cancelled() => {
                let _ = child.cleanup().await;
                (
                    DelegateStatus::Cancelled,
                    format!("sub-agent {agent} (session {session_id}) was cancelled: {e}"),
                )
            }
            Err(e) => {
                let _ = child.fail(&e.to_string()).await;
                let _ = child.cleanup().await;
                (
                    DelegateStatus::Failed,
                    format!("sub-agent {agent} (session {session_id}) failed: {e}"),
                )
            }
        };
        Ok(DelegateOutcome {
            session_id,
            agent: agent.to_string(),
            response,
            status,
        })
    }
}

/// Stops relaying a child's events to its parent when the delegation
/// ends, also when its future is dropped mid-run.
struct RelayGuard(crate::feed::Feed);

impl Drop for RelayGuard {
    fn drop(&mut self) {
        self.0.relay_events_to(None);
    }
}

impl Inner {
    /// The session's feed, once it is mounted.
    fn feed(&self) -> Option<crate::feed::Feed> {
        self.mounted.get().map(|m| m.log.feed().clone())
    }
}

/// The config of `agent`'s child session of `parent`: a new one, or the
/// stored child `continue_id` (checked to be `parent`'s child of `agent`).
async fn child_config(
    parent: &Inner,
    agent: &str,
    continue_id: Option<&SessionId>,
) -> Result<SessionConfig, String> {
    let pcfg = &parent.config;
    let Some(plan) = pcfg.plan.for_agent(agent) else {
        let known: Vec<&str> = pcfg.plan.agents.keys().map(String::as_str).collect();
        return Err(format!(
            "unknown agent {agent:?}: the available agents are {}",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ));
    };
    let session_id = match continue_id {
        None => SessionId::child_of(&parent.id, agent),
        Some(id) => {
            check_child(parent, agent, id).await?;
            id.clone()
        }
    };
    let mut config = pcfg.clone();
    config.plan = plan;
    config.session_id = Some(session_id);
    config.parent_id = Some(parent.id.clone());
    config.agent_name = Some(agent.to_string());
    config.name = None;
    // The child has a feed of its own: the parent's (a daemon's) is the
    // parent's log; the child's events reach it through the relay.
    config.feed = None;
    Ok(config)
}

/// Checks that stored session `id` is a child of `parent` made for `agent`.
async fn check_child(parent: &Inner, agent: &str, id: &SessionId) -> Result<(), String> {
    let fresh = "leave `session_id` out to start a new sub-agent session";
    let meta = match parent.config.store.get(id).await {
        Ok(meta) => meta,
        Err(StoreError::NotFound(_)) => {
            return Err(format!(
                "there is no session {id} to continue: pass a session_id returned by an earlier task call of this session, or {fresh}"
            ));
        }
        Err(e) => return Err(format!("cannot read session {id} to continue it: {e}")),
    };
    if meta.parent_id.as_ref() != Some(&parent.id) {
        return Err(format!(
            "session {id} is not a sub-agent session of this session, so it cannot be continued here: pass a session_id returned by an earlier task call of this session, or {fresh}"
        ));
    }
    match meta.agent_name.as_deref() {
        Some(name) if name == agent => Ok(()),
        Some(name) => Err(format!(
            "session {id} is a conversation with agent {name:?}, not {agent:?}: continue it with agent {name:?}, or {fresh}"
        )),
        None => Err(format!(
            "session {id} was not made for a sub-agent, so it cannot be continued with agent {agent:?}; {fresh}"
        )),
    }
}
