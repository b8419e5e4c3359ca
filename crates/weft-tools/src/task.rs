//! The `tool-task` module: the `task` tool, which delegates a
//! self-contained piece of work to a sub-agent.
//!
//! The sub-agent runs in a child session (its own transcript, the parent
//! recorded as `parent_id`) started through the session's
//! [`Delegate`](weft_core::tool::Delegate); the tool returns the child
//! session's id and its final answer. The agents available are the mount
//! plan's `agents`; the tool's description lists them (names and
//! descriptions, from the module environment at mount time), and an unknown
//! agent is reported at run time with the list of known ones.
//!
//! Cancelling the turn is passed on to the child session; if the delegate
//! has not returned [`CANCEL_GRACE`] after the cancellation, the tool
//! returns anyway.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use weft_core::tool::{Tool, ToolContext, ToolOutput};

use crate::args::Args;

/// How long the tool waits for a cancelled delegation to wind down.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Settings of the `tool-task` module (none yet; unknown keys are refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {}

/// The tools of `tool-task`, describing `agents` (`(name, description)`).
pub fn task_tools(_config: TaskConfig, agents: &[(String, String)]) -> Vec<Arc<dyn Tool>> {
    vec![Arc::new(Task::new(agents))]
}

/// `task`: runs an instruction in a sub-agent's child session.
#[derive(Debug, Clone)]
pub struct Task {
    description: String,
}

impl Task {
    /// The tool, its description listing `agents`.
    pub fn new(agents: &[(String, String)]) -> Self {
        let description = if agents.is_empty() {
            TASK_DESCRIPTION.to_string()
        } else {
            format!(
                "{TASK_DESCRIPTION} Available agents: {}.",
                agent_list(agents)
            )
        };
        Self { description }
    }
}

impl Default for Task {
    fn default() -> Self {
        Self::new(&[])
    }
}

const TASK_DESCRIPTION: &str = "Delegates a self-contained task to a sub-agent, which works in \
its own child session with its own tools and returns only its final answer. Use it for focused \
investigations whose details you do not need in this conversation. `agent` is the name of one \
of the session's configured sub-agents (an unknown name is answered with the list of available \
ones); `instruction` must say everything the sub-agent needs, since it does not see this \
conversation.";

fn agent_list(agents: &[(String, String)]) -> String {
    if agents.is_empty() {
        return "none are configured".into();
    }
    agents
        .iter()
        .map(|(name, description)| {
            if description.trim().is_empty() {
                name.clone()
            } else {
                format!("{name} ({})", description.trim())
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[async_trait]
impl Tool for Task {
    fn name(&self) -> &str {
        "task"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "agent": {"type": "string", "description": "The name of the sub-agent to delegate to."},
                "instruction": {"type": "string", "description": "The complete, self-contained task for the sub-agent."}
            },
            "required": ["agent", "instruction"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let parsed = (|| {
            let args = Args::parse("task", &input, &["agent", "instruction"])?;
            Ok::<_, String>((
                args.non_empty("agent")?.trim().to_string(),
                args.non_empty("instruction")?.to_string(),
            ))
        })();
        let (agent, instruction) = match parsed {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        };
        let Some(delegate) = ctx.delegate.clone() else {
            return ToolOutput::error(
                "task delegation is not available in this session, so do the work yourself",
            );
        };
        let agents = delegate.agents();
        if !agents.is_empty() && !agents.iter().any(|(name, _)| *name == agent) {
            return ToolOutput::error(format!(
                "unknown agent {agent:?}; the available agents are: {}",
                agent_list(&agents)
            ));
        }

        let cancel = ctx.cancel.clone();
        let run = delegate.delegate(&agent, &instruction, cancel.clone());
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            _ = cancel.cancelled() => {
                match tokio::time::timeout(CANCEL_GRACE, &mut run).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("the sub-agent {agent} was cancelled")),
                }
            }
        };
        match result {
            Ok(outcome) => {
                let answer = if outcome.text.trim().is_empty() {
                    "(the sub-agent gave no answer)".to_string()
                } else {
                    outcome.text
                };
                ToolOutput::ok(format!(
                    "Sub-agent {agent} (session {}) answered:\n\n{answer}",
                    outcome.session_id
                ))
            }
            Err(e) if cancel.is_cancelled() => {
                ToolOutput::error(format!("the task was cancelled: {e}"))
            }
            Err(e) if e.trim().is_empty() => {
                ToolOutput::error(format!("the sub-agent {agent} failed without saying why"))
            }
            // The delegate's errors are written for the model already.
            Err(e) => ToolOutput::error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_names_the_configured_agents() {
        let task = Task::new(&[("explorer".into(), "reads files".into())]);
        assert!(
            task.description()
                .contains("Available agents: explorer (reads files).")
        );
        assert_eq!(Task::default().description(), TASK_DESCRIPTION);
    }

    #[test]
    fn lists_agents_readably() {
        assert_eq!(agent_list(&[]), "none are configured");
        assert_eq!(
            agent_list(&[
                ("explorer".into(), "Reads things.".into()),
                ("bare".into(), String::new())
            ]),
            "explorer (Reads things.); bare"
        );
    }
}
