//! Running prompts: `weft run`, `weft continue`, `weft session resume`, and
//! the interactive mode (bare `weft`).

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;
use weft_core::mount::MountPlan;
use weft_core::store::{ForkPoint, ListFilter, ListQuery, StoreError};
use weft_core::{ResponseFormat, Session, SessionConfig, SessionError, SessionId, TurnRequest};

use crate::app::{App, PlanChoice};
use crate::term::{Interrupts, Printer, TerminalDisplay, approval, run_turn};

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// Streamed text.
    #[default]
    Text,
    /// One JSON object at the end.
    Json,
}

/// Options shared by the commands that run prompts.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Plan and provider choice.
    pub choice: PlanChoice,
    /// A name for a new session.
    pub name: Option<String>,
    /// Output format.
    pub output: OutputFormat,
    /// The branch to run on.
    pub branch: Option<String>,
    /// Allow everything that needs approval.
    pub yes: bool,
    /// Stream thinking to stderr.
    pub show_thinking: bool,
    /// Refuse a turn while another process runs one on its branch, instead
    /// of waiting.
    pub no_wait: bool,
    /// The id a new session gets (`run --session-id` naming no stored
    /// session); None: a fresh one.
    pub new_id: Option<SessionId>,
    /// `run --schema`: the answer must be JSON valid against it.
    pub response_format: Option<ResponseFormat>,
}

/// `run --session-id ID`: the session to continue when one has that id
/// exactly, else None with `opts.new_id` set so the new session gets it
/// (agentkernel's `session_id`). An id that is not valid is an error
/// saying what ids look like.
pub async fn session_by_id(
    app: &App,
    raw: &str,
    opts: &mut RunOptions,
) -> anyhow::Result<Option<SessionId>> {
    let id =
        SessionId::parse(raw).map_err(|e| anyhow::anyhow!("--session-id: {e}; pass a valid id"))?;
    match app.store.get(&id).await {
        Ok(_) => Ok(Some(id)),
        Err(StoreError::NotFound(_)) => {
            opts.new_id = Some(id);
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read session {id}")),
    }
}

/// Opens a session: a new one, or `resume` (its profile unless the flags
/// choose another).
pub async fn open_session(
    app: &App,
    opts: &RunOptions,
    resume: Option<&SessionId>,
) -> anyhow::Result<Session> {
    let mut choice = opts.choice.clone();
    let meta = match resume {
        Some(id) => Some(app.store.get(id).await?),
        None => None,
    };
    if let Some(meta) = &meta
        && choice.profile.is_none()
        && choice.mount_plan.is_none()
    {
        choice.profile = Some(meta.profile.clone());
        choice.recorded = MountPlan::recorded(&meta.metadata)
            .transpose()
            .with_context(|| {
                format!(
                    "the mount plan recorded with session {} cannot be used: pass \
                     --mount-plan or --profile",
                    meta.id
                )
            })?;
    }
    let (plan, profile) = app.plan(&choice).await?;
    // A plan from a file is recorded with the session, so it can be
    // continued without the file (issue 9, M1).
    let record = choice.mount_plan.is_some().then(|| plan.to_metadata());
    let approval = Some(approval(opts.yes));
    let display: Option<Arc<dyn weft_core::approval::DisplaySystem>> =
        Some(Arc::new(TerminalDisplay));
    let mut config = match &meta {
        Some(meta) => {
            let resumed =
                SessionConfig::resume(meta, plan, app.store.clone(), app.registry.clone());
            if let Some(agent) = resumed.lost_agent {
                eprintln!(
                    "warning: session {} was made for sub-agent {agent:?}, which its plan no longer has; running the plan itself",
                    meta.id
                );
            }
            let mut config = resumed.config;
            // A profile or plan chosen now replaces the recorded one.
            config.profile = profile;
            config.approval = approval;
            config.display = display;
            config
        }
        None => {
            let mut config = app.session_config(plan, profile, approval, display);
            config.session_id = opts.new_id.clone();
            config
        }
    };
    config.name = opts.name.clone();
    // A model chosen now, else the one chosen at creation, else the
    // configured default.
    config.model = choice
        .model
        .clone()
        .or(config.model)
        .or_else(|| app.config.model.clone());
    config.wait_for_turn = !opts.no_wait;
    let session = Session::new(config);
    session
        .initialize()
        .await
        .context("cannot start the session")?;
    if let Some(metadata) = record {
        let patch = weft_core::record::MetaPatch {
            metadata: Some(metadata),
            ..Default::default()
        };
        session
            .log()?
            .append(vec![weft_core::record::RecordKind::Meta(patch)])
            .await
            .context("cannot record the mount plan with the session")?;
    }
    if resume.is_some()
        && let Some(name) = &opts.name
    {
        app.store
            .update_meta(
                session.id(),
                weft_core::record::MetaPatch {
                    name: Some(name.clone()),
                    ..Default::default()
                },
            )
            .await?;
    }
    Ok(session)
}

/// Reads the prompt: the argument, or stdin when it is `-`.
pub fn read_prompt(prompt: &str) -> anyhow::Result<String> {
    if prompt == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the prompt from stdin")?;
        Ok(text)
    } else {
        Ok(prompt.to_string())
    }
}

/// Runs one prompt in `session`, prints the answer, and ends the session.
/// A Ctrl-C caught since [`Interrupts::catch_early`] cancels the turn.
pub async fn run_once(
    app: &App,
    session: Session,
    opts: &RunOptions,
    prompt: &str,
) -> anyhow::Result<()> {
    if prompt.trim().is_empty() {
        bail!("the prompt is empty: pass the prompt as an argument, or - to read it from stdin");
    }
    let mut interrupts = Interrupts::install().context("cannot catch Ctrl-C")?;
    // A structured answer is printed once validated, not as it streams.
    let streamed = opts.output == OutputFormat::Text && opts.response_format.is_none();
    let mut printer =
        streamed.then(|| Printer::new(opts.show_thinking, app.config.pricing.clone()));
    let request = TurnRequest::new(prompt)
        .on_branch(opts.branch.as_deref())
        .with_response_format(opts.response_format.clone());
    let result = run_turn(&session, request, printer.as_mut(), &mut interrupts).await;
    let cancelled = matches!(&result, Err(e) if e.is_cancelled());
    // A clash with another writer (a turn of another process, a session
    // ended elsewhere, a lease another node took over) is not the session's failure: it stays as the other
    // writer left it.
    if let Err(e) = &result
        && !cancelled
        && !is_concurrency(e)
    {
        session.fail(&e.to_string()).await?;
    }
    session.cleanup().await?;
    let meta = app.store.get(session.id()).await?;
    match (&result, opts.output) {
        (Ok(answer), OutputFormat::Json) => {
            let mut out = json!({
                "session_id": meta.id,
                "answer": answer.text,
                "status": meta.status,
                "turns": meta.turn_count,
                "messages": meta.message_count,
                "usage": meta.usage,
                "name": meta.name,
            });
            if let Some(value) = &answer.structured {
                out["structured"] = value.clone();
            }
            println!("{out}");
        }
        (Ok(answer), OutputFormat::Text) => {
            if let Some(value) = &answer.structured {
                crate::schema::print(value);
            }
            if !crate::ui::settings().quiet {
                eprintln!("session {}", meta.id);
            }
        }
        (Err(_), _) => eprintln!("session {}", meta.id),
    }
    match result {
        Ok(_) => Ok(()),
        Err(SessionError::Cancelled) => {
            eprintln!("cancelled");
            std::process::exit(130)
        }
        Err(e) if e.is_cancelled() => std::process::exit(130),
        Err(e) => Err(e.into()),
    }
}

/// Whether `e` comes from another writer of the session (a conflict, or a
/// change refused because of what another process did), not from the turn.
fn is_concurrency(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::Store(
            StoreError::Conflict { .. } | StoreError::Refused(_) | StoreError::LeaseLost { .. }
        )
    )
}

/// The most recent top-level session of the current project.
pub async fn latest_session(app: &App) -> anyhow::Result<SessionId> {
    let page = app
        .store
        .list(&ListQuery {
            filter: ListFilter {
                project: Some(app.project.slug.clone()),
                top_level_only: true,
                ..Default::default()
            },
            cursor: None,
            limit: 1,
        })
        .await?;
    page.sessions
        .into_iter()
        .next()
        .map(|m| m.id)
        .with_context(|| {
            format!(
                "no session to continue in {}: start one with `weft run \"prompt\"`",
                app.project.dir
            )
        })
}

const HELP: &str = "commands: /help, /id, /rename NAME, /fork [TURN], /branch [NAME], /undo [N] (take back the last N turns), /exit (or Ctrl-D); Ctrl-C cancels the running turn";

/// The interactive mode: a line editor with history, streaming answers.
pub async fn interactive(
    app: &App,
    opts: RunOptions,
    resume: Option<SessionId>,
) -> anyhow::Result<()> {
    let mut session = open_session(app, &opts, resume.as_ref()).await?;
    let mut branch = opts.branch.clone();
    let history = app.home.join("history");
    let mut editor = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
    let _ = editor.load_history(&history);
    let mut printer = Printer::new(opts.show_thinking, app.config.pricing.clone());
    let mut interrupts = Interrupts::install().context("cannot catch Ctrl-C")?;
    eprintln!(
        "weft — session {} ({}). {HELP}",
        session.id(),
        if session.is_resumed() {
            "resumed"
        } else {
            "new"
        }
    );
    loop {
        let label = branch.as_deref().unwrap_or("");
        let prompt = if label.is_empty() {
            "weft> ".to_string()
        } else {
            format!("weft[{label}]> ")
        };
        let line = tokio::task::block_in_place(|| editor.readline(&prompt));
        let line = match line {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read input"),
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(text);
        if let Some(command) = text.strip_prefix('/') {
            let (name, arg) = command.split_once(' ').unwrap_or((command, ""));
            let arg = arg.trim();
            match name {
                "exit" | "quit" => break,
                "help" => eprintln!("{HELP}"),
                "id" => eprintln!("session {}", session.id()),
                "undo" => {
                    let undone = match crate::history_cmd::undo_turns(arg) {
                        Ok(n) => session
                            .rewind(branch.as_deref(), n)
                            .await
                            .map_err(Into::into),
                        Err(e) => Err(e),
                    };
                    match undone {
                        Ok(done) => eprintln!(
                            "took back {} turn(s): {} message(s) left the conversation",
                            done.turns, done.messages
                        ),
                        Err(e) => eprintln!("error: {e:#}"),
                    }
                }
                "rename" => {
                    if let Err(e) = crate::session_cmd::rename(app, session.id(), arg).await {
                        eprintln!("error: {e:#}");
                    }
                }
                "fork" => {
                    let point = if arg.is_empty() {
                        ForkPoint::End
                    } else {
                        match arg.parse::<u64>() {
                            Ok(turn) => ForkPoint::Turn(turn),
                            Err(_) => {
                                eprintln!("error: /fork takes a turn number");
                                continue;
                            }
                        }
                    };
                    match app.store.fork(session.id(), point, None, None).await {
                        Ok(meta) => {
                            session.cleanup().await?;
                            session = open_session(app, &opts, Some(&meta.id)).await?;
                            eprintln!("forked into session {}; now working in it", meta.id);
                        }
                        Err(e) => eprintln!("error: {e}"),
                    }
                }
                "branch" => {
                    let view = session.view().await?;
                    if arg.is_empty() {
                        for b in &view.branches {
                            let mark = if b.branch.id == view.meta.default_branch {
                                "*"
                            } else {
                                " "
                            };
                            eprintln!("{mark} {} ({} messages)", b.branch.name, b.messages.len());
                        }
                    } else if view.branch(arg).is_some() {
                        branch = Some(arg.to_string());
                        eprintln!("now on branch {arg}");
                    } else {
                        eprintln!(
                            "error: no branch {arg:?}: `weft branch new {} {arg}` makes one",
                            session.id()
                        );
                    }
                }
                other => eprintln!("unknown command /{other}: {HELP}"),
            }
            continue;
        }
        // A Ctrl-C pressed between turns is not meant for this one.
        interrupts.clear();
        let request = TurnRequest::new(text).on_branch(branch.as_deref());
        let result = run_turn(&session, request, Some(&mut printer), &mut interrupts).await;
        match result {
            Ok(_) => {}
            Err(e) if e.is_cancelled() => eprintln!("(turn cancelled)"),
            Err(e) => eprintln!("error: {e}"),
        }
    }
    let _ = editor.save_history(&history);
    session.cleanup().await?;
    eprintln!("session {}", session.id());
    Ok(())
}
