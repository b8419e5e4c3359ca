//! The terminal side of a session: streaming the answer to stdout, tool
//! activity to stderr, approvals asked on the terminal, Ctrl-C handling.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;
use weft_core::approval::{
    ApprovalDecision, ApprovalError, ApprovalRequest, ApprovalSystem, DisplayLevel, DisplaySystem,
    FixedApproval,
};
use weft_core::hooks::events;
use weft_core::{CancelMode, FeedItem, Session, SessionError, TurnAnswer, TurnEvents, TurnRequest};

use crate::ui;
use crate::ui::markdown::MarkdownStream;
use crate::ui::spinner::{Activity, summarize_arguments};
use crate::ui::summary::{Pricing, TurnStats};

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
            // The spinner stays off the screen while the question waits.
            ui::spinner::prompt(|| {
                eprint!("\n{prompt} [y]es / [a]lways / [N]o: ");
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
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
        ui::spinner::suspend(|| eprintln!("{label}: {message}"));
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

/// Prints a turn as it happens: the answer text to stdout (rendered as
/// Markdown on a terminal unless `--raw`), thinking (when asked for) and
/// tool activity to stderr, a spinner while the model or tools are
/// awaited, and a summary line after the turn. It reads the turn's part of
/// the session's feed ([`weft_core::TurnEvents`]).
#[derive(Debug)]
pub struct Printer {
    show_thinking: bool,
    open_line: bool,
    ui: ui::Settings,
    pricing: Pricing,
    activity: Activity,
    markdown: Option<MarkdownStream>,
    stats: TurnStats,
    started: Instant,
}

impl Printer {
    /// A printer; `show_thinking` also prints thinking deltas (dimmed);
    /// `pricing` prices the per-turn summary.
    pub fn new(show_thinking: bool, pricing: Pricing) -> Self {
        let ui = ui::settings();
        Self {
            show_thinking: show_thinking && !ui.quiet,
            open_line: false,
            ui,
            pricing,
            activity: Activity::new(ui.animate),
            markdown: None,
            stats: TurnStats::default(),
            started: Instant::now(),
        }
    }

    /// A turn starts: the clock and counts restart, the spinner shows.
    pub fn begin(&mut self) {
        self.stats = TurnStats::default();
        self.started = Instant::now();
        self.markdown = self
            .ui
            .markdown
            .then(|| MarkdownStream::new(self.ui.color_stdout, ui::spinner::width()));
        self.activity.waiting(WAITING);
    }

    /// The turn ended: the rest of the answer, then (on a terminal, not
    /// `--quiet`) the summary line.
    pub fn end(&mut self) {
        self.finish();
        self.activity.clear();
        if self.ui.stderr_terminal && !self.ui.quiet {
            let line = self.stats.line(self.started.elapsed(), &self.pricing);
            eprintln!("{}", ui::paint(&line, "2", self.ui.color_stderr));
        }
    }

    /// Ends the streamed answer: prints what the Markdown renderer holds,
    /// and a newline if the answer did not end with one.
    pub fn finish(&mut self) {
        if let Some(md) = &mut self.markdown {
            let out = md.finish();
            self.write(&out);
        }
        if std::mem::take(&mut self.open_line) {
            println!();
        }
    }

    /// Writes answer text to stdout, the spinner taken off first.
    fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.activity.clear();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.open_line = !text.ends_with('\n');
    }

    /// A line of activity on stderr (not with `--quiet`).
    fn note(&self, line: &str) {
        if !self.ui.quiet {
            self.activity.println(line);
        }
    }

    /// Prints one item of the turn.
    fn show(&mut self, item: &FeedItem) {
        let Some(event) = item.as_event() else {
            return;
        };
        let data = &event.data;
        match event.name.as_str() {
            events::CONTENT_BLOCK_DELTA if data["kind"] == "text" => {
                if let Some(text) = data["delta"].as_str() {
                    match &mut self.markdown {
                        Some(md) => {
                            let out = md.push(text);
                            if out.is_empty() && md.holds_text() {
                                self.activity.waiting("writing the answer");
                            }
                            self.write(&out);
                        }
                        None => self.write(text),
                    }
                }
            }
            events::THINKING_DELTA if self.show_thinking => {
                if let Some(text) = data["delta"].as_str() {
                    self.activity.clear();
                    eprint!("{}", ui::paint(text, "2", self.ui.color_stderr));
                }
            }
            events::THINKING_DELTA => self.activity.waiting("thinking"),
            events::PROVIDER_REQUEST => {
                self.finish();
                self.activity.waiting(WAITING);
            }
            events::PROVIDER_RESPONSE => {
                if let Ok(usage) = serde_json::from_value(data["usage"].clone()) {
                    self.stats.add_response(&usage, data["model"].as_str());
                }
            }
            events::TOOL_PRE => {
                self.finish();
                self.stats.tool_calls += 1;
                let name = data["tool_name"].as_str().unwrap_or("?");
                let call = data["call_id"].as_str().unwrap_or(name);
                if !self.ui.quiet {
                    let arguments = summarize_arguments(&data["tool_input"], 40);
                    self.activity
                        .tool_started(call, format!("{name}({arguments})"));
                }
                self.note(&format!("● {name}({})", one_line(&data["tool_input"], 100)));
            }
            events::TOOL_POST => {
                self.tool_ended(data);
                self.note(&format!("  ⎿ {}", one_line(&data["result"]["output"], 120)));
            }
            events::TOOL_ERROR => {
                self.tool_ended(data);
                self.note(&format!("  ⎿ error: {}", one_line(&data["error"], 200)));
            }
            events::PROVIDER_RETRY => {
                self.note(&format!(
                    "retrying {} in {} ms (attempt {}): {}",
                    data["provider"].as_str().unwrap_or("provider"),
                    data["delay_ms"],
                    data["attempt"],
                    one_line(&data["reason"], 200)
                ));
            }
            _ => {}
        }
    }

    fn tool_ended(&mut self, data: &Value) {
        let name = data["tool_name"].as_str().unwrap_or("?");
        self.activity
            .tool_ended(data["call_id"].as_str().unwrap_or(name));
    }
}

/// What the spinner says until the model answers.
const WAITING: &str = "waiting for the model";

/// The process's Ctrl-C, caught from start-up on: a Ctrl-C pressed at any
/// moment of a turn — even before the turn has started — reaches it, and
/// never kills the process by default action.
pub struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

/// The Ctrl-C caught by [`Interrupts::catch_early`], waiting for
/// [`Interrupts::install`] to take it.
#[cfg(unix)]
static EARLY: std::sync::Mutex<Option<tokio::signal::unix::Signal>> = std::sync::Mutex::new(None);

/// A new listener of SIGINT.
#[cfg(unix)]
fn sigint() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
}

impl Interrupts {
    /// Catches Ctrl-C from now on, before the session is opened (call at
    /// the start of a command that runs one prompt, inside the runtime): a
    /// Ctrl-C pressed while the command starts cancels its turn instead of
    /// killing the process. The next [`Interrupts::install`] takes it over.
    pub fn catch_early() -> std::io::Result<()> {
        #[cfg(unix)]
        {
            let mut early = EARLY.lock().unwrap_or_else(|e| e.into_inner());
            if early.is_none() {
                *early = Some(sigint()?);
            }
        }
        Ok(())
    }

    /// Installs the handler (call once, early), or takes over the one of
    /// [`Interrupts::catch_early`] with the Ctrl-Cs it caught.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        let early = EARLY.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(Self {
            #[cfg(unix)]
            signal: match early {
                Some(signal) => signal,
                None => sigint()?,
            },
        })
    }

    /// Forgets Ctrl-Cs pressed while no turn ran.
    pub fn clear(&mut self) {
        #[cfg(unix)]
        while let Some(Some(())) = futures::FutureExt::now_or_never(self.signal.recv()) {}
    }

    /// The next Ctrl-C.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            if self.signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Runs one prompt as a turn, printing it with `printer` (None: print
/// nothing); the first Ctrl-C cancels the turn (not the session) — at any
/// moment, even before it has started, and also one `interrupts` caught
/// before the call (the caller clears those it means to forget) — a second
/// one exits.
pub async fn run_turn(
    session: &Session,
    request: TurnRequest,
    mut printer: Option<&mut Printer>,
    interrupts: &mut Interrupts,
) -> Result<TurnAnswer, SessionError> {
    if let Some(p) = printer.as_deref_mut() {
        p.begin();
    }
    let start = session.start_turn_with(request);
    tokio::pin!(start);
    let mut cancel_early = false;
    let mut handle = loop {
        tokio::select! {
            handle = &mut start => break handle?,
            _ = interrupts.next() => ctrl_c_pressed(&mut cancel_early),
        }
    };
    let canceller = handle.canceller();
    if cancel_early {
        canceller.request(CancelMode::Immediate);
    }
    let mut events = handle.events();
    let result = handle.answer();
    tokio::pin!(result);
    let mut cancelled = cancel_early;
    let mut following = events.is_some();
    let outcome = loop {
        tokio::select! {
            result = &mut result => break result,
            item = next_item(&mut events), if following => match item {
                Some(Ok(item)) => {
                    if let Some(p) = printer.as_deref_mut() {
                        p.show(&item);
                    }
                }
                Some(Err(e)) => {
                    ui::spinner::suspend(|| eprintln!("\nwarning: {e}; the rest of the turn is not shown as it streams"));
                    following = false;
                }
                None => following = false,
            },
            _ = interrupts.next() => {
                ctrl_c_pressed(&mut cancelled);
                canceller.request(CancelMode::Immediate);
            }
        }
    };
    // What the turn published before it ended is shown too.
    if following && let Some(events) = events.as_mut() {
        while let Some(Ok(item)) = events.try_next().await {
            if let Some(p) = printer.as_deref_mut() {
                p.show(&item);
            }
        }
    }
    if let Some(p) = printer {
        p.end();
    }
    outcome
}

/// A Ctrl-C during a turn: the first one is noted (the caller cancels
/// the turn), a second one exits the process.
fn ctrl_c_pressed(cancelled: &mut bool) {
    if *cancelled {
        ui::spinner::suspend(|| eprintln!("\ninterrupted"));
        std::process::exit(130);
    }
    *cancelled = true;
    ui::spinner::suspend(|| eprintln!("\ncancelling the turn (Ctrl-C again to quit)…"));
}

async fn next_item(
    events: &mut Option<TurnEvents>,
) -> Option<Result<Arc<FeedItem>, weft_core::FeedError>> {
    match events {
        Some(events) => events.next().await,
        None => None,
    }
}
