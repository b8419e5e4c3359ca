//! `weft`: the command-line face of the weft agent session kernel.
//!
//! It runs prompts (`weft run`, bare `weft` for the interactive mode,
//! `weft continue`), manages stored sessions (`weft session …`), lists
//! models and profiles, and starts the daemon (`weft serve`). It owns the
//! terminal: streaming output, approval prompts, Ctrl-C. Everything else
//! lives in the library crates.

mod app;
mod branch_cli;
mod branch_cmd;
mod config;
mod doctor_cmd;
mod history_cmd;
mod import_cmd;
mod keys_cmd;
mod mcp_cmd;
mod models;
mod resume_cmd;
mod run;
mod schema;
mod serve;
mod session_cmd;
mod table;
mod term;
mod token_cmd;
mod ui;
mod watch_cmd;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use weft_core::SessionStatus;

use crate::app::{App, PlanChoice};
use crate::branch_cli::{
    BranchCommand, MailCommand, StateCommand, branch_command, mail_command, state_command,
};
use crate::config::StoreFlags;
use crate::run::{OutputFormat, RunOptions};
use crate::session_cmd::{ExportFormat, ListOptions};

/// weft: run LLM conversations as durable sessions you can list, resume,
/// fork, branch and serve.
#[derive(Parser)]
#[command(name = "weft", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(flatten)]
    run: RunFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
struct GlobalArgs {
    /// weft's home directory (sessions, profiles, config.toml).
    #[arg(long, global = true, env = "WEFT_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// The session store (default: fs, or WEFT_STORE__KIND).
    #[arg(long, global = true, value_parser = ["fs", "sqlite", "memory", "postgres", "redis", "dynamodb"])]
    store: Option<String>,
    /// The server of a network store (`postgres://user:pass@host:port/db`,
    /// `redis://host:6379/0`, `dynamodb://[host:port]/TABLE?region=…`; or
    /// WEFT_STORE__URL, or `[store] url` in config.toml).
    #[arg(long, global = true, value_name = "URL")]
    store_url: Option<String>,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    ui: ui::UiArgs,
}

impl GlobalArgs {
    fn store_flags(&self) -> StoreFlags {
        StoreFlags {
            kind: self.store.clone(),
            url: self.store_url.clone(),
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
struct RunFlags {
    /// Profile (named mount plan): base, dev, foundation/…, or a user profile.
    #[arg(long)]
    profile: Option<String>,
    /// Provider: anthropic, openai, ollama or scripted (default: auto-detected).
    #[arg(long)]
    provider: Option<String>,
    /// Model name for the provider.
    #[arg(long)]
    model: Option<String>,
    /// Script for the scripted provider (JSON or YAML).
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// A mount-plan file to use instead of a profile.
    #[arg(long, value_name = "FILE")]
    mount_plan: Option<PathBuf>,
    /// Base URL of the provider's API (any OpenAI-compatible server).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Name for a new session (at most 50 characters).
    #[arg(long)]
    name: Option<String>,
    /// Branch to run on (default: the session's default branch).
    #[arg(long)]
    branch: Option<String>,
    /// Allow every action that needs approval (bash commands) without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Show the model's thinking on stderr.
    #[arg(long)]
    show_thinking: bool,
    /// Refuse, instead of waiting, when another process runs a turn on the
    /// same branch.
    #[arg(long)]
    no_wait: bool,
}

impl RunFlags {
    fn options(&self, output: OutputFormat) -> RunOptions {
        RunOptions {
            choice: PlanChoice {
                profile: self.profile.clone(),
                mount_plan: self.mount_plan.clone(),
                provider: self.provider.clone(),
                model: self.model.clone(),
                base_url: self.base_url.clone(),
                script: self.script.clone(),
                ..Default::default()
            },
            name: self.name.clone(),
            output,
            branch: self.branch.clone(),
            yes: self.yes,
            show_thinking: self.show_thinking,
            no_wait: self.no_wait,
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one prompt in a new (or resumed) session and print the answer.
    Run {
        /// The prompt (- reads it from stdin).
        prompt: String,
        /// Resume this session (id or unique prefix) instead of starting one.
        #[arg(long, value_name = "ID")]
        resume: Option<String>,
        /// Continue the session with exactly this id, or create it with this id.
        #[arg(long, value_name = "ID", conflicts_with = "resume")]
        session_id: Option<String>,
        /// Answer with JSON valid against this JSON Schema (a JSON or YAML file), printed on stdout.
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Continue the most recent session of this project (interactive without a prompt).
    Continue {
        /// The prompt (- reads it from stdin).
        prompt: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Pick a session of this project from a searchable list and continue it
    /// interactively (type to filter by name, prompt or id; arrows; Enter).
    Resume {
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Manage stored sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Manage a session's branches.
    #[command(subcommand)]
    Branch(BranchCommand),
    /// Send and collect mail between a session's branches.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Read and change a session's key/value state.
    #[command(subcommand)]
    State(StateCommand),
    /// List the models a provider offers.
    Models {
        /// Provider (default: auto-detected).
        #[arg(long)]
        provider: Option<String>,
        /// Base URL of the provider's API.
        #[arg(long)]
        base_url: Option<String>,
        /// Script, for the scripted provider.
        #[arg(long)]
        script: Option<PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show the configured MCP servers and their tools.
    #[command(subcommand)]
    Mcp(mcp_cmd::McpCommand),
    /// List the profiles.
    Profiles {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Start the daemon (REST + SSE API).
    Serve(serve::ServeArgs),
    /// Manage the daemon's tenant tokens ($WEFT_HOME/tokens.toml).
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Check the store of this weft home and, with --fix, repair it.
    ///
    /// Exit status 0: healthy; 1: problems found; 2: the home cannot be checked.
    Doctor(doctor_cmd::DoctorArgs),
    /// Manage the master key of encryption at rest (docs/encryption.md).
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// List sessions, newest first.
    List {
        /// Every session, delegated sub-sessions included, uncapped unless
        /// --limit is given.
        #[arg(long)]
        all: bool,
        /// How many to show (default 20; with --all, every session unless
        /// this is given).
        #[arg(long)]
        limit: Option<usize>,
        /// Sessions of every project, not just this directory's.
        #[arg(long)]
        all_projects: bool,
        /// Show sub-sessions and forks under the sessions they came from.
        #[arg(long)]
        tree: bool,
        /// Only sessions with this status.
        #[arg(long)]
        status: Option<SessionStatus>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show a session's details.
    Show {
        /// Session id or unique prefix.
        id: String,
        /// Also print the transcript.
        #[arg(long)]
        transcript: bool,
        /// Also print every record of the log (rewound messages marked).
        #[arg(long)]
        log: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Resume a session: run a prompt in it, or continue interactively.
    Resume {
        /// Session id or unique prefix.
        id: String,
        /// The prompt (interactive without one).
        prompt: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Fork a session after a turn into a new session.
    Fork {
        /// Session id or unique prefix.
        id: String,
        /// The last turn to keep (asked for when omitted).
        turn: Option<u64>,
        /// A name for the new session.
        name: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Delete a session.
    Delete {
        /// Session id or unique prefix.
        id: String,
        /// Do not ask.
        #[arg(long)]
        confirm: bool,
        /// Also delete its delegated sub-sessions (forks are sessions of
        /// their own and stay).
        #[arg(long)]
        with_children: bool,
    },
    /// Delete sessions not updated for some days (never active ones).
    Cleanup {
        /// Age in days.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take back (undo) the last turns of a branch: they leave the
    /// conversation, the model's context and exports; the log keeps them.
    Rewind {
        /// Session id or unique prefix.
        id: String,
        /// How many turns.
        #[arg(default_value_t = 1)]
        turns: u64,
        /// The branch (default: the session's default branch).
        #[arg(long)]
        branch: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Rename a session.
    Rename {
        /// Session id or unique prefix.
        id: String,
        /// The new name (at most 50 characters).
        name: String,
    },
    /// Search message text across sessions.
    Search {
        /// Words to find (all of them).
        text: String,
        /// Search every project.
        #[arg(long)]
        all_projects: bool,
        /// Most hits.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Import sessions written by the Amplifier CLI (ids, names, parent links kept).
    Import {
        /// Read from Amplifier's session directories (default ~/.amplifier).
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "")]
        from_amplifier: Option<PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Follow a session's log as it is written, by any process or node
    /// sharing the store (Ctrl-C stops).
    Watch {
        /// Session id or unique prefix.
        id: String,
        /// Start after this seq (0: the whole log; default: only new records).
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
    /// Export a session.
    Export {
        /// Session id or unique prefix.
        id: String,
        /// Format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Md)]
        format: ExportFormat,
        /// Write to this file instead of stdout (required for parquet).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Table formats: only these branches (repeatable; default all).
        #[arg(long = "branch")]
        branches: Vec<String>,
        /// Table formats: leave out messages cloned by a split.
        #[arg(long)]
        exclude_clone: bool,
        /// Table formats: leave out loaded (imported) messages.
        #[arg(long)]
        exclude_load: bool,
    },
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Whether `command` runs one prompt and exits (`run`, `continue PROMPT`,
/// `session resume ID PROMPT`).
fn runs_one_prompt(command: Option<&Command>) -> bool {
    matches!(
        command,
        Some(
            Command::Run { .. }
                | Command::Continue {
                    prompt: Some(_),
                    ..
                }
                | Command::Session(SessionCommand::Resume {
                    prompt: Some(_),
                    ..
                })
        )
    )
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Completions { shell }) = &cli.command {
        clap_complete::generate(*shell, &mut Cli::command(), "weft", &mut std::io::stdout());
        return Ok(());
    }
    if let Some(Command::Keys(cmd)) = cli.command {
        return keys_cmd::run(cli.global.home.clone(), &cli.global.store_flags(), cmd).await;
    }
    if runs_one_prompt(cli.command.as_ref()) {
        // Before the session opens: a Ctrl-C from now on cancels the
        // prompt's turn instead of killing the process (issue 10).
        term::Interrupts::catch_early().context("cannot catch Ctrl-C")?;
    }
    if let Some(Command::Token(cmd)) = cli.command {
        // Only the weft home: no store to open.
        let home = cli
            .global
            .home
            .unwrap_or_else(weft_store::default_weft_home);
        return token_cmd::run(&home, cmd);
    }
    let app = App::load(cli.global.home.clone(), &cli.global.store_flags())?;
    let env = ui::Environment::current();
    ui::set(ui::Settings::decide(&cli.global.ui, &app.config.ui, env));
    match cli.command {
        None => run::interactive(&app, cli.run.options(OutputFormat::Text), None).await,
        Some(Command::Run {
            prompt,
            resume,
            session_id,
            schema,
            output,
            flags,
        }) => {
            let mut opts = flags.options(output);
            opts.response_format = schema.as_deref().map(schema::load).transpose()?;
            let prompt = run::read_prompt(&prompt)?;
            let resume = match (resume, session_id) {
                (Some(id), _) => Some(app.resolve(&id).await?),
                (None, Some(raw)) => run::session_by_id(&app, &raw, &mut opts).await?,
                (None, None) => None,
            };
            let session = run::open_session(&app, &opts, resume.as_ref()).await?;
            run::run_once(&app, session, &opts, &prompt).await
        }
        Some(Command::Continue {
            prompt,
            output,
            flags,
        }) => {
            let opts = flags.options(output);
            let id = run::latest_session(&app).await?;
            match prompt {
                Some(p) => {
                    let prompt = run::read_prompt(&p)?;
                    let session = run::open_session(&app, &opts, Some(&id)).await?;
                    run::run_once(&app, session, &opts, &prompt).await
                }
                None => run::interactive(&app, opts, Some(id)).await,
            }
        }
        Some(Command::Resume { flags }) => {
            resume_cmd::resume(&app, flags.options(OutputFormat::Text)).await
        }
        Some(Command::Session(cmd)) => session_command(&app, cmd).await,
        Some(Command::Branch(cmd)) => branch_command(&app, cmd).await,
        Some(Command::Mail(cmd)) => mail_command(&app, cmd).await,
        Some(Command::State(cmd)) => state_command(&app, cmd).await,
        Some(Command::Models {
            provider,
            base_url,
            script,
            json,
        }) => models::models(&app, provider, base_url, script, json).await,
        Some(Command::Profiles { json }) => models::profiles(&app, json),
        Some(Command::Mcp(cmd)) => mcp_cmd::run(&app, cmd).await,
        Some(Command::Serve(args)) => serve::run(&app, args).await,
        Some(
            Command::Completions { .. } | Command::Doctor(_) | Command::Token(_) | Command::Keys(_),
        ) => Ok(()),
    }
}

async fn session_command(app: &App, cmd: SessionCommand) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::List {
            all,
            limit,
            all_projects,
            tree,
            status,
            json,
        } => {
            session_cmd::list(
                app,
                &ListOptions {
                    all,
                    limit,
                    all_projects,
                    tree,
                    status,
                    json,
                },
            )
            .await
        }
        SessionCommand::Show {
            id,
            transcript,
            log,
            json,
        } => {
            if log && json {
                anyhow::bail!(
                    "--log prints text: `weft session export ID --format jsonl` gives the records as JSON"
                );
            }
            session_cmd::show(app, &id, transcript, json).await?;
            if log {
                let id = app.resolve(&id).await?;
                history_cmd::print_log(app, &id).await?;
            }
            Ok(())
        }
        SessionCommand::Rewind {
            id,
            turns,
            branch,
            json,
        } => history_cmd::rewind_cmd(app, &id, turns, branch.as_deref(), json).await,
        SessionCommand::Resume {
            id,
            prompt,
            output,
            flags,
        } => {
            let opts = flags.options(output);
            let id = app.resolve(&id).await?;
            match prompt {
                Some(p) => {
                    let prompt = run::read_prompt(&p)?;
                    let session = run::open_session(app, &opts, Some(&id)).await?;
                    run::run_once(app, session, &opts, &prompt).await
                }
                None => run::interactive(app, opts, Some(id)).await,
            }
        }
        SessionCommand::Fork {
            id,
            turn,
            name,
            json,
        } => session_cmd::fork(app, &id, turn, name, json).await,
        SessionCommand::Delete {
            id,
            confirm,
            with_children,
        } => session_cmd::delete(app, &id, confirm, with_children).await,
        SessionCommand::Cleanup { days, dry_run } => session_cmd::cleanup(app, days, dry_run).await,
        SessionCommand::Rename { id, name } => {
            let id = app.resolve(&id).await?;
            session_cmd::rename(app, &id, &name).await
        }
        SessionCommand::Search {
            text,
            all_projects,
            limit,
            json,
        } => session_cmd::search(app, &text, all_projects, limit, json).await,
        SessionCommand::Import {
            from_amplifier,
            json,
        } => import_cmd::import(app, from_amplifier, json).await,
        SessionCommand::Watch {
            id,
            after,
            limit,
            json,
        } => {
            let options = watch_cmd::WatchOptions { after, limit, json };
            watch_cmd::watch(app, &id, &options).await
        }
        SessionCommand::Export {
            id,
            format,
            output,
            branches,
            exclude_clone,
            exclude_load,
        } => {
            let table = session_cmd::TableOptions {
                branches,
                exclude_clone,
                exclude_load,
            };
            session_cmd::export(app, &id, format, output.as_deref(), &table).await
        }
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    // The config's [ui] table counts once the home is loaded (dispatch).
    let env = ui::Environment::current();
    ui::set(ui::Settings::decide(
        &cli.global.ui,
        &Default::default(),
        env,
    ));
    if let Some(Command::Doctor(args)) = &cli.command {
        // Before anything opens the store: doctor must work on a home the
        // store cannot open, and must not write to it without --fix.
        let g = &cli.global;
        match doctor_cmd::run(g.home.clone(), &g.store_flags(), args) {
            Ok(healthy) => std::process::exit(if healthy { 0 } else { 1 }),
            Err(e) => {
                eprintln!("error: {}", error_message(&e));
                std::process::exit(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime");
    let result = runtime.and_then(|rt| rt.block_on(dispatch(cli)));
    if let Err(e) = result {
        eprintln!("error: {}", error_message(&e));
        std::process::exit(1);
    }
}

/// An error and its causes on one line, each cause once.
fn error_message(e: &anyhow::Error) -> String {
    let mut message = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !message.contains(&c) {
            message.push_str(": ");
            message.push_str(&c);
        }
    }
    message
}
