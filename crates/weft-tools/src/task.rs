//! The `tool-task` module: the `task` tool, which delegates a
//! self-contained piece of work to a sub-agent.
//!
//! The sub-agent runs in a child session (its own transcript, the parent
//! recorded as `parent_id`) started through the session's
//! [`Delegate`](weft_core::tool::Delegate). Sub-agent conversations are
//! multi-turn: given the `session_id` of an earlier child of this session
//! (and the same agent), the instruction runs as that child's next turn.
//! The tool returns a structured result `{session_id, agent, response,
//! status}`: as readable text for the model (with the session id and how to
//! continue), and as JSON in the tool message's record
//! ([`ToolOutput::data`]). The agents available are the mount
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
use weft_core::SessionId;
use weft_core::tool::{
    DelegateOutcome, DelegateRequest, DelegateStatus, Tool, ToolContext, ToolOutput,
};

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
conversation. The result names the sub-agent's `session_id`: pass it back with the same `agent` \
to continue that conversation (the sub-agent then remembers its earlier work); leave it out to \
start a fresh one.";

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
                "instruction": {"type": "string", "description": "The complete, self-contained task for the sub-agent."},
                "session_id": {"type": "string", "description": "The session_id of an earlier task result, to continue that conversation with the same agent."}
            },
            "required": ["agent", "instruction"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let parsed = (|| {
            let args = Args::parse("task", &input, &["agent", "instruction", "session_id"])?;
            let session_id = match args.opt_string("session_id")?.map(str::trim) {
                None | Some("") => None,
                Some(id) => Some(SessionId::parse(id).map_err(|e| {
                    format!("task: `session_id` is not a session id ({e}); pass the session_id of an earlier task result, or leave it out")
                })?),
            };
            Ok::<_, String>(DelegateRequest {
                agent: args.non_empty("agent")?.trim().to_string(),
                instruction: args.non_empty("instruction")?.to_string(),
                session_id,
            })
        })();
        let request = match parsed {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        };
        let Some(delegate) = ctx.delegate.clone() else {
            return ToolOutput::error(
                "task delegation is not available in this session, so do the work yourself",
            );
        };
        let agent = request.agent.clone();
        let agents = delegate.agents();
        if !agents.is_empty() && !agents.iter().any(|(name, _)| *name == agent) {
            return ToolOutput::error(format!(
                "unknown agent {agent:?}; the available agents are: {}",
                agent_list(&agents)
            ));
        }

        let cancel = ctx.cancel.clone();
        let run = delegate.delegate(request, cancel.clone());
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
            Ok(outcome) => outcome_output(outcome),
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

/// The tool's result for a delegated run: readable text for the model,
/// `{session_id, agent, response, status}` as its data.
fn outcome_output(outcome: DelegateOutcome) -> ToolOutput {
    let data = json!({
        "session_id": outcome.session_id,
        "agent": outcome.agent,
        "response": outcome.response,
        "status": outcome.status.as_str(),
    });
    let DelegateOutcome {
        session_id,
        agent,
        response,
        status,
    } = outcome;
    let hint = format!(
        "(To continue this conversation, call task again with agent \"{agent}\" and session_id \"{session_id}\".)"
    );
    let output = match status {
        DelegateStatus::Completed => {
            let answer = if response.trim().is_empty() {
                "(the sub-agent gave no answer)".to_string()
            } else {
                response
            };
            ToolOutput::ok(format!(
                "Sub-agent {agent} (session_id {session_id}, status completed) answered:\n\n{answer}\n\n{hint}"
            ))
        }
        DelegateStatus::Failed => ToolOutput::error(format!("{response}\n{hint}")),
        DelegateStatus::Cancelled => {
            ToolOutput::error(format!("the task was cancelled: {response}"))
        }
    };
    output.with_data(data)
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
