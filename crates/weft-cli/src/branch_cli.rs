//! The clap definitions of `weft branch`, `weft mail` and `weft state`,
//! and their dispatch to [`crate::branch_cmd`]. It knows the command line
//! only; the work is in `branch_cmd`.

use clap::Subcommand;

use crate::app::App;
use crate::branch_cmd;

/// `weft branch …`.
#[derive(Subcommand)]
pub enum BranchCommand {
    /// List a session's branches (* marks the default).
    List {
        /// Session id or unique prefix.
        id: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Make a new branch.
    New {
        /// Session id or unique prefix.
        id: String,
        /// The branch name (unique in the session).
        name: String,
        /// Its system message.
        #[arg(long)]
        system: Option<String>,
        /// Its model.
        #[arg(long)]
        model: Option<String>,
        /// Its provider.
        #[arg(long)]
        provider: Option<String>,
        /// Tools it may use (default: all of the session's).
        #[arg(long = "tool")]
        tools: Vec<String>,
        /// Who sends its system message (default: system).
        #[arg(long)]
        system_sender: Option<String>,
        /// Stamp a time into its system message: alone, the current time;
        /// with a value, that text.
        #[arg(long, num_args = 0..=1, default_missing_value = "now", value_name = "TEXT")]
        system_datetime: Option<String>,
        /// Its owner.
        #[arg(long)]
        user: Option<String>,
    },
    /// Clone a branch into a new one.
    Split {
        /// Session id or unique prefix.
        id: String,
        /// The branch to clone (id or name).
        branch: String,
        /// The new branch's name.
        name: Option<String>,
    },
    /// Remove a branch (its messages stay in the log).
    Remove {
        /// Session id or unique prefix.
        id: String,
        /// The branch (id or name).
        branch: String,
        /// Delete it too: its messages leave every view and export.
        #[arg(long)]
        delete: bool,
    },
    /// Make a branch the default.
    Default {
        /// Session id or unique prefix.
        id: String,
        /// The branch (id or name).
        branch: String,
    },
}

/// `weft mail …`.
#[derive(Subcommand)]
pub enum MailCommand {
    /// Send mail from one branch to another (or to all others).
    Send {
        /// Session id or unique prefix.
        id: String,
        /// The sending branch.
        #[arg(long)]
        from: String,
        /// The receiving branch.
        #[arg(
            long,
            conflicts_with = "broadcast",
            required_unless_present = "broadcast"
        )]
        to: Option<String>,
        /// Send to every other branch.
        #[arg(long)]
        broadcast: bool,
        /// message (text for the recipient), tool (a tool name) or model (JSON {"model", "provider"}).
        #[arg(long, default_value = "message")]
        category: String,
        /// The payload.
        item: String,
    },
    /// List mail waiting to be collected.
    List {
        /// Session id or unique prefix.
        id: String,
        /// Only mail for this branch.
        #[arg(long)]
        to: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Deliver waiting mail into the recipients' conversations.
    Collect {
        /// Session id or unique prefix.
        id: String,
        /// Only for this branch.
        #[arg(long)]
        to: Option<String>,
        /// Only from this branch.
        #[arg(long)]
        from: Option<String>,
    },
}

/// `weft state …`.
#[derive(Subcommand)]
pub enum StateCommand {
    /// Print a key's JSON value.
    Get {
        /// Session id or unique prefix.
        id: String,
        /// The key (app:…, user:… or session-local).
        key: String,
    },
    /// Set a key (the value is JSON, or else a string).
    Set {
        /// Session id or unique prefix.
        id: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove a key.
    Delete {
        /// Session id or unique prefix.
        id: String,
        /// The key.
        key: String,
    },
    /// List every key the session sees.
    List {
        /// Session id or unique prefix.
        id: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Remove every session-local key.
    Clear {
        /// Session id or unique prefix.
        id: String,
    },
}

/// Runs a `weft branch` command.
pub async fn branch_command(app: &App, cmd: BranchCommand) -> anyhow::Result<()> {
    match cmd {
        BranchCommand::List { id, json } => branch_cmd::list(app, &id, json).await,
        BranchCommand::New {
            id,
            name,
            system,
            model,
            provider,
            tools,
            system_sender,
            system_datetime,
            user,
        } => {
            use weft_core::branches::SystemDatetime;
            let spec = weft_core::branches::NewBranch {
                name,
                system,
                model,
                provider,
                tools,
                messages: Vec::new(),
                system_sender,
                system_datetime: system_datetime.map(|d| match d.as_str() {
                    "now" => SystemDatetime::Now(true),
                    _ => SystemDatetime::At(d),
                }),
                user,
            };
            branch_cmd::new(app, &id, spec).await
        }
        BranchCommand::Split { id, branch, name } => {
            branch_cmd::split(app, &id, &branch, name).await
        }
        BranchCommand::Remove { id, branch, delete } => {
            branch_cmd::remove(app, &id, &branch, delete).await
        }
        BranchCommand::Default { id, branch } => branch_cmd::set_default(app, &id, &branch).await,
    }
}

/// Runs a `weft mail` command.
pub async fn mail_command(app: &App, cmd: MailCommand) -> anyhow::Result<()> {
    match cmd {
        MailCommand::Send {
            id,
            from,
            to,
            broadcast,
            category,
            item,
        } => {
            let to = if broadcast { None } else { to };
            branch_cmd::send(app, &id, &from, to.as_deref(), &category, &item).await
        }
        MailCommand::List { id, to, json } => {
            branch_cmd::pending(app, &id, to.as_deref(), json).await
        }
        MailCommand::Collect { id, to, from } => {
            branch_cmd::collect(app, &id, to.as_deref(), from.as_deref()).await
        }
    }
}

/// Runs a `weft state` command.
pub async fn state_command(app: &App, cmd: StateCommand) -> anyhow::Result<()> {
    match cmd {
        StateCommand::Get { id, key } => branch_cmd::get(app, &id, &key).await,
        StateCommand::Set { id, key, value } => branch_cmd::set(app, &id, &key, &value).await,
        StateCommand::Delete { id, key } => branch_cmd::delete(app, &id, &key).await,
        StateCommand::List { id, json } => branch_cmd::list_state(app, &id, json).await,
        StateCommand::Clear { id } => branch_cmd::clear(app, &id).await,
    }
}
