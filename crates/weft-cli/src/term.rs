//! The terminal side of a session: streaming the answer to stdout, tool
//! activity to stderr, approvals asked on the terminal, Ctrl-C handling.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde_json::Value;
use weft_core::approval::{
    ApprovalDecision, ApprovalError, ApprovalRequest, ApprovalSystem, DisplayLevel, DisplaySystem,
    FixedApproval,
};
use weft_core::hooks::{HookResult, events, hook_fn};
use weft_core::{CancelMode, Session, SessionError};

/// Asks approval questions on the terminal; fail-closed without one.
pub struct TerminalApproval;

#[async_trait]
impl ApprovalSystem for TerminalApproval {
    async fn request_approval(
        &self,
        request: ApprovalRequest,
    ) -> Result<ApprovalDecision, ApprovalError> {
        if !std::io::stdin().is_terminal() {
            return Ok(ApprovalDecision::Deny {
                reason: Some(format!(
                    "{} needs approval and there is no terminal to ask: rerun with --yes to allow it",
                    request.subject
                )),
            });
        }
        let prompt = request.prompt.clone();
        let answer = tokio::task::spawn_blocking(move || {
            eprint!("\n{prompt} [y]es / [a]lways / [N]o: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await
        .map_err(|e| ApprovalError(e.to_string()))?
        .map_err(|e| ApprovalError(e.to_string()))?;
        Ok(match answer.trim().to_lowercase().as_str() {
            "y" | "yes" => ApprovalDecision::Allow,
            "a" | "always" => ApprovalDecision::AllowAlways,
            _ => ApprovalDecision::Deny {
                reason: Some("denied by the user".into()),
            },
        })
    }
}

/// The approval system for a command: everything allowed with `--yes`,
/// else the terminal.
pub fn approval(yes: bool) -> Arc<dyn ApprovalSystem> {
    if yes {
        Arc::new(FixedApproval::allow_all())
    } else {
        Arc::new(TerminalApproval)
    }
}

/// Shows notifications on stderr.
pub struct TerminalDisplay;

impl DisplaySystem for TerminalDisplay {
    fn show_message(&self, message: &str, level: DisplayLevel, _source: &str) {
        let label = match level {
            DisplayLevel::Info => "note",
            DisplayLevel::Warning => "warning",
            DisplayLevel::Error => "error",
        };
        eprintln!("{label}: {message}");
    }
}

fn one_line(v: &Value, max: usize) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let s = s.replace('\n', " ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// Tracks whether the streamed answer needs a final newline.
#[derive(Default)]
pub struct StreamState {
    open_line: AtomicBool,
}

impl StreamState {
    /// Ends the streamed answer with a newline if it did not end with one.
    pub fn finish(&self) {
        if self.open_line.swap(false, Ordering::SeqCst) {
            println!();
        }
    }
}

/// Streams the session's answer text to stdout and tool activity to
/// stderr.
pub fn attach_printer(session: &Session, show_thinking: bool) -> Arc<StreamState> {
    let state = Arc::new(StreamState::default());
    let s = state.clone();
    session.hooks().register(
        events::CONTENT_BLOCK_DELTA,
        hook_fn(move |_, data| {
            let s = s.clone();
            async move {
                if data["kind"] == "text"
                    && let Some(text) = data["delta"].as_str()
                {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                    s.open_line.store(!text.ends_with('\n'), Ordering::SeqCst);
                }
                Ok(HookResult::proceed())
            }
        }),
        100,
        "cli-stream",
    );
    if show_thinking {
        session.hooks().register(
            events::THINKING_DELTA,
            hook_fn(|_, data| async move {
                if let Some(text) = data["delta"].as_str() {
                    eprint!("\x1b[2m{text}\x1b[0m");
                }
                Ok(HookResult::proceed())
            }),
            100,
            "cli-thinking",
        );
    }
    let s = state.clone();
    session.hooks().register(
        events::TOOL_PRE,
        hook_fn(move |_, data| {
            let s = s.clone();
            async move {
                s.finish();
                eprintln!(
                    "● {}({})",
                    data["tool_name"].as_str().unwrap_or("?"),
                    one_line(&data["tool_input"], 100)
                );
                Ok(HookResult::proceed())
            }
        }),
        100,
        "cli-tool-pre",
    );
    session.hooks().register(
        events::TOOL_POST,
        hook_fn(|_, data| async move {
            eprintln!("  ⎿ {}", one_line(&data["result"]["output"], 120));
            Ok(HookResult::proceed())
        }),
        100,
        "cli-tool-post",
    );
    session.hooks().register(
        events::TOOL_ERROR,
        hook_fn(|_, data| async move {
            eprintln!("  ⎿ error: {}", one_line(&data["error"], 200));
            Ok(HookResult::proceed())
        }),
        100,
        "cli-tool-error",
    );
    session.hooks().register(
        events::PROVIDER_RETRY,
        hook_fn(|_, data| async move {
            eprintln!(
                "retrying {} in {} ms (attempt {}): {}",
                data["provider"].as_str().unwrap_or("provider"),
                data["delay_ms"],
                data["attempt"],
                one_line(&data["reason"], 200)
            );
            Ok(HookResult::proceed())
        }),
        100,
        "cli-retry",
    );
    state
}

/// Runs one prompt; the first Ctrl-C cancels the turn (not the session),
/// a second one exits.
pub async fn execute_with_ctrl_c(
    session: &Session,
    branch: Option<&str>,
    prompt: &str,
) -> Result<String, SessionError> {
    let exec = session.execute_on(branch, prompt);
    tokio::pin!(exec);
    let mut cancelled = false;
    loop {
        tokio::select! {
            result = &mut exec => return result,
            signal = tokio::signal::ctrl_c() => {
                if signal.is_err() || cancelled {
                    eprintln!("\ninterrupted");
                    std::process::exit(130);
                }
                cancelled = true;
                eprintln!("\ncancelling the turn (Ctrl-C again to quit)…");
                session.cancel(CancelMode::Immediate).await;
            }
        }
    }
}
