//! Delegation to sub-agents: a child session per task (the `task` tool).

use std::sync::Weak;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{CancelMode, Inner, Session};
use crate::id::SessionId;
use crate::tool::{Delegate, DelegateOutcome};

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
        agent: &str,
        instruction: &str,
        cancel: CancellationToken,
    ) -> Result<DelegateOutcome, String> {
        let parent = self
            .parent
            .upgrade()
            .ok_or_else(|| "the parent session has ended".to_string())?;
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
        let mut config = pcfg.clone();
        config.plan = plan;
        config.session_id = Some(SessionId::child_of(&parent.id, agent));
        config.parent_id = Some(parent.id.clone());
        config.agent_name = Some(agent.to_string());
        config.name = None;
        let child = Session::new(config);
        child.initialize().await.map_err(|e| e.to_string())?;
        let watcher = {
            let child = child.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                cancel.cancelled().await;
                child.cancel(CancelMode::Immediate).await;
            })
        };
        let result = child.execute(instruction).await;
        watcher.abort();
        match result {
            Ok(text) => {
                child.cleanup().await.map_err(|e| e.to_string())?;
                Ok(DelegateOutcome {
                    session_id: child.id().clone(),
                    text,
                })
            }
            Err(e) => {
                let _ = child.fail(&e.to_string()).await;
                let _ = child.cleanup().await;
                Err(format!(
                    "sub-agent {agent} (session {}) failed: {e}",
                    child.id()
                ))
            }
        }
    }
}
