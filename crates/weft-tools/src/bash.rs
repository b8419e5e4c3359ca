//! The `tool-bash` module: the `bash` tool, which runs a shell command
//! after approval.
//!
//! For each call:
//!
//! 1. The input is validated (`command`, optional `timeout_secs` and
//!    `description`).
//! 2. The [command policy](crate::policy) decides: a `deny` rule refuses
//!    the command outright (deny always wins); an `allow` rule runs it
//!    without asking; otherwise approval is needed.
//! 3. Approval: `approval:required` is emitted on the session's hooks (a
//!    hook that answers `deny` refuses the command without asking), then
//!    the session's approval system is asked through
//!    [`weft_core::approval::ask`], which is **fail-closed**: no approval
//!    system, an error, a timeout or anything but an allow is a denial.
//!    `approval:granted` or `approval:denied` follows. A denial is a failed
//!    output saying the command was not run and why. An `allow_always`
//!    answer lets the same command text run without asking again for the
//!    rest of the session. Commands decided by the config's rules are not
//!    asked about, so they emit no `approval:*` events.
//! 4. The command runs with `bash -c` in the working directory, in its own
//!    session and process group (see [`crate::process`]), stdout and stderr
//!    interleaved, stdin empty. Timeout, cancellation and the end of the
//!    command kill the whole process group.
//! 5. The output is capped (head and tail kept around a marker) and the
//!    exit code reported; a non-zero exit is a failed output.
//!
//! Module config (all optional):
//!
//! ```yaml
//! tools:
//!   - module: tool-bash
//!     config:
//!       allow: ["git status", "git diff", "cargo test", "re:^ls( -[a-z]+)?$"]
//!       deny: ["rm -rf", "git push", "sudo"]
//!       timeout_secs: 120           # default per command
//!       max_timeout_secs: 600       # the most a call may ask for
//!       max_output_chars: 30000     # output cap
//!       approval_timeout_secs: 300  # how long to wait for an answer
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use weft_core::tool::{Tool, ToolContext, ToolOutput};

use crate::access::ask_approval;
use crate::args::Args;
use crate::policy::{CommandPolicy, PolicyDecision};
use crate::process::{self, Ending};

/// The largest timeout the config may set, in seconds (a week).
const MAX_CONFIG_SECS: u64 = 7 * 24 * 3600;

/// Settings of the `tool-bash` module.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BashConfig {
    /// Commands that run without asking: word prefixes or `re:REGEX`.
    pub allow: Vec<String>,
    /// Commands that are never run: word prefixes or `re:REGEX` (wins over
    /// `allow` and over approval).
    pub deny: Vec<String>,
    /// The timeout of a command that names none (default 120 s).
    pub timeout_secs: u64,
    /// The longest timeout a call may ask for (default 600 s).
    pub max_timeout_secs: u64,
    /// The most characters of output returned (default 30,000).
    pub max_output_chars: usize,
    /// How long to wait for an approval answer before denying (default
    /// 300 s).
    pub approval_timeout_secs: u64,
}

impl Default for BashConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            timeout_secs: 120,
            max_timeout_secs: 600,
            max_output_chars: 30_000,
            approval_timeout_secs: 300,
        }
    }
}

/// `bash`: runs a shell command after approval.
pub struct Bash {
    config: BashConfig,
    policy: CommandPolicy,
    description: String,
    /// Commands answered `allow_always` in this session.
    always: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Bash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bash")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Bash {
    /// A bash tool with `config`; fails on a bad rule or limit.
    pub fn new(config: BashConfig) -> Result<Self, String> {
        if config.timeout_secs == 0 || config.max_timeout_secs == 0 {
            return Err("timeout_secs and max_timeout_secs must be at least 1".into());
        }
        if config.timeout_secs > config.max_timeout_secs {
            return Err(format!(
                "timeout_secs ({}) cannot exceed max_timeout_secs ({})",
                config.timeout_secs, config.max_timeout_secs
            ));
        }
        if config.max_timeout_secs > MAX_CONFIG_SECS
            || config.approval_timeout_secs > MAX_CONFIG_SECS
        {
            return Err(format!(
                "max_timeout_secs and approval_timeout_secs cannot exceed {MAX_CONFIG_SECS} (a week)"
            ));
        }
        if config.max_output_chars < 100 {
            return Err("max_output_chars must be at least 100".into());
        }
        let policy = CommandPolicy::new(&config.allow, &config.deny)?;
        let description = format!(
            "Runs a shell command with `bash -c` in the working directory and returns its \
             combined stdout and stderr and its exit code. Each command needs the user's \
             approval unless the configuration allows it, so say what it is for in \
             `description`. Commands time out after {} s unless `timeout_secs` says otherwise \
             (at most {} s); the command and every process it started are killed on timeout, \
             on cancellation and when it exits, so do not start background servers. stdin is \
             empty, so interactive programs cannot be used. Output beyond {} characters is \
             cut in the middle. Prefer read_file, glob and grep for reading and searching files.",
            config.timeout_secs, config.max_timeout_secs, config.max_output_chars
        );
        Ok(Self {
            config,
            policy,
            description,
            always: Mutex::new(HashSet::new()),
        })
    }

    fn remembered(&self, command: &str) -> bool {
        self.always
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(command)
    }

    fn remember(&self, command: &str) {
        self.always
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(command.to_string());
    }

    /// Runs the approval flow; `Err` is the reason for a denial.
    async fn approve(
        &self,
        command: &str,
        description: Option<&str>,
        timeout_secs: u64,
        ctx: &ToolContext,
    ) -> Result<(), String> {
        let event = json!({
            "tool_name": "bash",
            "call_id": ctx.call_id,
            "branch": ctx.branch,
            "command": command,
            "description": description,
            "working_dir": ctx.working_dir,
            "timeout_secs": timeout_secs,
        });
        let mut prompt = String::from("Run this command?\n\n    ");
        prompt.push_str(&command.replace('\n', "\n    "));
        if let Some(d) = description {
            prompt.push_str(&format!("\n\nPurpose: {d}"));
        }
        prompt.push_str(&format!("\nIn: {}", ctx.working_dir.display()));
        let timeout = Duration::from_secs(self.config.approval_timeout_secs);
        let always = ask_approval(ctx, "bash", prompt, event, timeout).await?;
        if always {
            self.remember(command);
        }
        Ok(())
    }
}

#[async_trait]
impl Tool for Bash {
    fn name(&self) -> &str {
        "bash"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command line, run with `bash -c`."},
                "timeout_secs": {
                    "type": "integer", "minimum": 1, "maximum": self.config.max_timeout_secs,
                    "description": format!("Seconds before the command is killed (default {}).", self.config.timeout_secs)
                },
                "description": {"type": "string", "description": "What the command does and why, in a few words (shown when asking for approval)."}
            },
            "required": ["command"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let parsed = (|| {
            let args = Args::parse("bash", &input, &["command", "timeout_secs", "description"])?;
            let command = args.non_empty("command")?.to_string();
            let timeout = match args.opt_u64("timeout_secs")? {
                Some(0) => return Err("bash needs `timeout_secs` to be at least 1".to_string()),
                Some(t) => t.min(self.config.max_timeout_secs),
                None => self.config.timeout_secs,
            };
            let description = args.opt_string("description")?.map(str::to_string);
            Ok((command, timeout, description))
        })();
        let (command, timeout, description) = match parsed {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        };

        match self.policy.decide(&command) {
            PolicyDecision::Deny(rule) => {
                return ToolOutput::error(format!(
                    "the command was not run: it matches the deny rule {rule:?} in tool-bash's \
                     config; do not try to work around it"
                ));
            }
            PolicyDecision::Allow(_) => {}
            PolicyDecision::Ask if self.remembered(&command) => {}
            PolicyDecision::Ask => {
                if let Err(reason) = self
                    .approve(&command, description.as_deref(), timeout, ctx)
                    .await
                {
                    return ToolOutput::error(format!(
                        "the command was not run: approval was denied ({reason})"
                    ));
                }
            }
        }

        if !ctx.working_dir.is_dir() {
            return ToolOutput::error(format!(
                "the command was not run: the working directory {} does not exist",
                ctx.working_dir.display()
            ));
        }
        let finished = match process::run(
            &command,
            &ctx.working_dir,
            Duration::from_secs(timeout),
            self.config.max_output_chars,
            &ctx.cancel,
        )
        .await
        {
            Ok(f) => f,
            Err(e) => {
                return ToolOutput::error(format!("the command could not be started: {e}"));
            }
        };
        let output = if finished.output.is_empty() {
            "(no output)".to_string()
        } else {
            finished.output
        };
        let failed = |error: String| ToolOutput {
            success: false,
            output: output.clone(),
            error: Some(error),
            data: None,
        };
        match finished.ending {
            Ending::Exited(0) => {
                let mut text = output.clone();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str("(exit code 0)");
                ToolOutput::ok(text)
            }
            Ending::Exited(code) => failed(format!("the command exited with code {code}")),
            Ending::Signaled(sig) => failed(format!("the command was killed by signal {sig}")),
            Ending::TimedOut => failed(format!(
                "the command timed out after {timeout} s and was killed, with every process it \
                 started"
            )),
            Ending::Cancelled => {
                failed("the command was cancelled and killed, with every process it started".into())
            }
        }
    }
}

/// The tools of `tool-bash`.
pub fn bash_tools(config: BashConfig) -> Result<Vec<Arc<dyn Tool>>, String> {
    Ok(vec![Arc::new(Bash::new(config)?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated() {
        assert!(Bash::new(BashConfig::default()).is_ok());
        let bad = |f: fn(&mut BashConfig)| {
            let mut c = BashConfig::default();
            f(&mut c);
            Bash::new(c).is_err()
        };
        assert!(bad(|c| c.timeout_secs = 0));
        assert!(bad(|c| c.timeout_secs = 1000));
        assert!(bad(|c| c.max_output_chars = 10));
        assert!(bad(|c| c.max_timeout_secs = u64::MAX));
        assert!(bad(|c| c.approval_timeout_secs = u64::MAX));
        assert!(bad(|c| c.deny = vec!["re:(".into()]));
        assert!(bad(|c| c.allow = vec![" ".into()]));
    }
}
