//! `weft session …`: list, show, fork, delete, cleanup, rename, search,
//! export. What the list hides is the core's
//! [`SessionMeta::is_sub_session`]; this module only renders.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Local;
use serde_json::json;
use weft_core::SessionId;
use weft_core::message::{ContentBlock, Message, Role};
use weft_core::record::MetaPatch;
use weft_core::session::{SessionMeta, SessionStatus};
use weft_core::store::{DeleteOptions, ForkPoint, ListCursor, ListFilter, ListQuery, SearchQuery};
use weft_core::view::{SessionView, turn_starts};

use crate::app::App;
use crate::ui::progress::Progress;

use weft_core::session::{MAX_NAME_CHARS, check_name};

/// How many sessions `weft session list` shows without `--all` or
/// `--limit`.
pub const DEFAULT_LIST_LIMIT: usize = 20;

/// Options of `weft session list`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Every session: delegated sub-sessions included, and no cap unless
    /// `limit` is set.
    pub all: bool,
    /// How many to show (`None`: [`DEFAULT_LIST_LIMIT`], or every session
    /// with `all`).
    pub limit: Option<usize>,
    /// Every project, not just the current one.
    pub all_projects: bool,
    /// Children indented under their parents.
    pub tree: bool,
    /// Only this status.
    pub status: Option<SessionStatus>,
    /// JSON output.
    pub json: bool,
}

/// `s` on one line, at most `max` characters (an ellipsis marks a cut).
pub fn truncate(s: &str, max: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    if s.chars().count() > max {
        format!(
            "{}…",
            s.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    } else {
        s
    }
}

/// `t` in local time, to the minute.
pub fn local_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

/// Whether a turn runs on session `meta` (in any process sharing the
/// store: its turn lock is live), and whether it is interrupted (active,
/// nobody running it, a turn's process stopped mid-turn). Only active
/// sessions cost a lock lookup.
async fn run_state(app: &App, meta: &SessionMeta) -> anyhow::Result<(bool, bool)> {
    if meta.status != SessionStatus::Active {
        return Ok((false, false));
    }
    let locks = app.store.turn_locks(&meta.id).await?;
    let running = locks.iter().any(|l| l.live);
    Ok((
        running,
        !running && locks.iter().any(|l| l.holder.is_some()),
    ))
}

/// The Status column: the status, or for an active session `running`
/// (a turn runs), `interrupted` (nobody runs it; a turn was cut off) or
/// `active` (idle).
fn status_cell(meta: &SessionMeta, (running, interrupted): (bool, bool)) -> String {
    match (meta.status, running, interrupted) {
        (SessionStatus::Active, true, _) => "running".into(),
        (SessionStatus::Active, _, true) => "interrupted".into(),
        (status, _, _) => status.to_string(),
    }
}

/// The Name column: the name, and a fork's lineage.
fn name_cell(meta: &SessionMeta) -> String {
    let name = meta.name.clone().unwrap_or_default();
    match &meta.forked_from {
        Some(f) => {
            let source: String = f.session_id.as_str().chars().take(8).collect();
            format!("{name} (fork of {source}, turn {})", f.turn)
                .trim_start()
                .to_string()
        }
        None => name,
    }
}

fn row(meta: &SessionMeta, state: (bool, bool), indent: usize) -> String {
    format!(
        "{:<width$}  {:<16}  {:<11}  {:<10}  {:>8}  {:<40}  {}",
        format!("{}{}", "  ".repeat(indent), meta.id),
        local_time(&meta.created_at),
        status_cell(meta, state),
        truncate(&meta.profile, 10),
        meta.message_count,
        truncate(meta.last_prompt.as_deref().unwrap_or(""), 40),
        name_cell(meta),
        width = 36 + 2 * indent.min(4),
    )
}

const HEADER: &str = "ID                                    Created           Status       Profile     Messages  Last prompt                               Name";

/// The sessions `filter` selects, newest first: at most `cap` (every one
/// for `None`), and whether more were left out.
async fn collect(
    app: &App,
    filter: ListFilter,
    cap: Option<usize>,
) -> anyhow::Result<(Vec<SessionMeta>, bool)> {
    let mut out = Vec::new();
    let mut cursor: Option<ListCursor> = None;
    loop {
        let want = cap.map_or(500, |c| c.saturating_sub(out.len()).clamp(1, 500));
        let page = app
            .store
            .list(&ListQuery {
                filter: filter.clone(),
                cursor,
                limit: want,
            })
            .await?;
        out.extend(page.sessions);
        match page.next_cursor {
            None => return Ok((out, false)),
            Some(_) if cap.is_some_and(|c| out.len() >= c) => return Ok((out, true)),
            Some(c) => cursor = Some(c),
        }
    }
}

/// `weft session list`.
pub async fn list(app: &App, opts: &ListOptions) -> anyhow::Result<()> {
    let filter = ListFilter {
        project: (!opts.all_projects).then(|| app.project.slug.clone()),
        status: opts.status,
        top_level_only: !opts.all || opts.tree,
        ..Default::default()
    };
    let cap = match opts.limit {
        Some(n) => Some(n.max(1)),
        None if opts.all => None,
        None => Some(DEFAULT_LIST_LIMIT),
    };
    let (mut sessions, more) = collect(app, filter, cap).await?;
    if opts.tree {
        // A fork whose source is listed too shows under it instead.
        let listed: std::collections::HashSet<SessionId> =
            sessions.iter().map(|m| m.id.clone()).collect();
        sessions.retain(|m| {
            m.forked_from
                .as_ref()
                .is_none_or(|f| !listed.contains(&f.session_id))
        });
    }
    let hint = format!(
        "… more sessions than the {} shown: `weft session list --all` shows every one (or raise --limit)",
        sessions.len()
    );
    if opts.json {
        let mut out = Vec::new();
        for meta in &sessions {
            let mut v = serde_json::to_value(meta)?;
            let (running, interrupted) = run_state(app, meta).await?;
            v["running"] = running.into();
            v["interrupted"] = interrupted.into();
            if opts.tree {
                v["children"] = serde_json::to_value(children(app, &meta.id).await?)?;
            }
            out.push(v);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        if more {
            eprintln!("{hint}");
        }
        return Ok(());
    }
    if sessions.is_empty() {
        eprintln!(
            "no sessions{}: start one with `weft run \"prompt\"`",
            if opts.all_projects {
                String::new()
            } else {
                format!(" in {}", app.project.dir)
            }
        );
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{HEADER}")?;
    for meta in &sessions {
        writeln!(out, "{}", row(meta, run_state(app, meta).await?, 0))?;
        if opts.tree {
            print_tree(app, &meta.id, 1, &mut out).await?;
        }
    }
    if more {
        writeln!(out, "{hint}")?;
    }
    Ok(())
}

/// The sessions that came from `source`: its delegated sub-sessions, then
/// its forks.
async fn children(app: &App, source: &SessionId) -> anyhow::Result<Vec<SessionMeta>> {
    let (mut out, _) = collect(
        app,
        ListFilter {
            parent_id: Some(source.clone()),
            ..Default::default()
        },
        None,
    )
    .await?;
    let (forks, _) = collect(
        app,
        ListFilter {
            forked_from: Some(source.clone()),
            ..Default::default()
        },
        None,
    )
    .await?;
    out.extend(forks);
    Ok(out)
}

async fn print_tree(
    app: &App,
    parent: &SessionId,
    depth: usize,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Depth-first, in listing order: push children reversed, print on pop.
    let mut stack: Vec<(SessionMeta, usize)> = children(app, parent)
        .await?
        .into_iter()
        .rev()
        .map(|m| (m, depth))
        .collect();
    while let Some((meta, d)) = stack.pop() {
        writeln!(out, "{}", row(&meta, run_state(app, &meta).await?, d))?;
        if d < 16 {
            for kid in children(app, &meta.id).await?.into_iter().rev() {
                stack.push((kid, d + 1));
            }
        }
    }
    Ok(())
}

fn block_text(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text { text } => text.clone(),
        ContentBlock::Thinking { thinking, .. } => format!("(thinking) {thinking}"),
        ContentBlock::ToolCall {
            name, arguments, ..
        } => format!("→ {name}({arguments})"),
        ContentBlock::ToolResult {
            output, is_error, ..
        } => {
            if *is_error {
                format!("← error: {output}")
            } else {
                format!("← {output}")
            }
        }
        ContentBlock::Image { .. } => "[image]".into(),
    }
}

fn message_text(m: &Message) -> String {
    m.content
        .iter()
        .map(block_text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many characters of the last prompt `show` prints: what fits the
/// terminal after the label, or 100 when stdout is not a terminal.
fn prompt_width() -> usize {
    const LABEL: usize = 10;
    if std::io::stdout().is_terminal()
        && let Ok((cols, _)) = crossterm::terminal::size()
    {
        (cols as usize).saturating_sub(LABEL).max(20)
    } else {
        100
    }
}

/// `weft session show`.
pub async fn show(app: &App, id: &str, transcript: bool, json_out: bool) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let view = app.store.view(&id).await?;
    let meta = &view.meta;
    // Active, but its process exited mid-turn (see `Store::is_interrupted`),
    // or running a turn (in any process sharing the store).
    let interrupted = app.store.is_interrupted(&id).await?;
    let runner = if meta.status == SessionStatus::Active {
        app.store
            .turn_locks(&id)
            .await?
            .into_iter()
            .find(|l| l.live)
    } else {
        None
    };
    // Damaged records the store set aside (never silently gone).
    let quarantined = app.store.quarantined(&id).await?;
    if json_out {
        let mut v = json!({"session": meta, "last_prompt": view.last_prompt(), "interrupted": interrupted, "running": runner.is_some(), "quarantined": quarantined});
        if transcript {
            v["transcript"] = serde_json::to_value(view.messages(meta.default_branch.as_str()))?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "Session   {}", meta.id)?;
    if let Some(name) = &meta.name {
        writeln!(out, "Name      {name}")?;
    }
    if let Some(d) = &meta.description {
        writeln!(out, "About     {d}")?;
    }
    if interrupted {
        writeln!(
            out,
            "Status    {} (interrupted: the process running its turn exited; `weft run --resume` continues it, `weft session cleanup` removes it)",
            meta.status
        )?;
    } else if let Some(lock) = &runner {
        let who = lock.holder.as_ref().map_or_else(
            || "another process".to_string(),
            weft_core::lease::TurnHolder::describe,
        );
        writeln!(
            out,
            "Status    {} (running a turn on branch {} in {who})",
            meta.status, lock.branch
        )?;
    } else {
        writeln!(out, "Status    {}", meta.status)?;
    }
    if !quarantined.is_empty() {
        let seqs: Vec<String> = quarantined.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "Damaged   {} record(s) (seq {}) were unreadable and set aside in log.quarantine.jsonl; run `weft doctor` for details",
            quarantined.len(),
            seqs.join(", ")
        )?;
    }
    writeln!(out, "Project   {}", meta.project.dir)?;
    writeln!(out, "Profile   {}", meta.profile)?;
    if let Some(model) = &meta.model {
        writeln!(out, "Model     {model}")?;
    }
    if let Some(settings) = weft_core::settings::SettingsOverrides::recorded(&meta.metadata) {
        writeln!(out, "Settings  {}", settings_line(&settings))?;
    }
    writeln!(out, "Created   {}", local_time(&meta.created_at))?;
    writeln!(out, "Updated   {}", local_time(&meta.updated_at))?;
    writeln!(
        out,
        "Turns     {}   Messages {}",
        meta.turn_count, meta.message_count
    )?;
    if let Some(prompt) = view.last_prompt() {
        writeln!(out, "Prompt    {}", truncate(&prompt, prompt_width()))?;
    }
    writeln!(
        out,
        "Tokens    {} in / {} out",
        meta.usage.input_tokens, meta.usage.output_tokens
    )?;
    if let Some(p) = &meta.parent_id {
        writeln!(
            out,
            "Parent    {p}{}",
            meta.agent_name
                .as_ref()
                .map(|a| format!(" (agent {a})"))
                .unwrap_or_default()
        )?;
    }
    if let Some(f) = &meta.forked_from {
        writeln!(out, "Forked    from {} at turn {}", f.session_id, f.turn)?;
    }
    if let Some(e) = &meta.error_message {
        writeln!(out, "Error     {e}")?;
    }
    if view.branches.len() > 1 {
        let names: Vec<&str> = view
            .branches
            .iter()
            .map(|b| b.branch.name.as_str())
            .collect();
        writeln!(
            out,
            "Branches  {} (default {})",
            names.join(", "),
            meta.default_branch
        )?;
    }
    if transcript {
        writeln!(out)?;
        for m in view.messages(meta.default_branch.as_str()) {
            writeln!(out, "[{}] {}", m.role, message_text(m))?;
        }
    }
    Ok(())
}

/// `weft session rename`.
pub async fn rename(app: &App, id: &SessionId, name: &str) -> anyhow::Result<()> {
    let name = check_name(name)?;
    if name.is_empty() {
        bail!("the name is empty: give a name of 1 to {MAX_NAME_CHARS} characters");
    }
    app.store
        .update_meta(
            id,
            MetaPatch {
                name: Some(name.to_string()),
                ..Default::default()
            },
        )
        .await?;
    eprintln!("renamed {id} to {name:?}");
    Ok(())
}

fn ask_yes(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N]: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// `weft session fork`: without a turn, shows the last turns and asks.
pub async fn fork(
    app: &App,
    id: &str,
    turn: Option<u64>,
    name: Option<String>,
    json_out: bool,
) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let turn = match turn {
        Some(t) => t,
        None => {
            let records = app.store.read_all(&id).await?;
            let view = SessionView::from_records(&records)?;
            let starts = turn_starts(&records, &view.meta.default_branch);
            if starts.is_empty() {
                bail!("session {id} has no turns to fork at");
            }
            if !std::io::stdin().is_terminal() {
                bail!(
                    "give the turn to fork at: weft session fork {id} TURN (1 to {})",
                    starts.len()
                );
            }
            let first_shown = starts.len().saturating_sub(10);
            for (i, seq) in starts.iter().enumerate().skip(first_shown) {
                let prompt = records
                    .iter()
                    .find(|r| r.seq == *seq)
                    .and_then(|r| r.as_message())
                    .map(Message::text_content)
                    .unwrap_or_default();
                eprintln!("{:>4}  {}", i + 1, truncate(&prompt, 70));
            }
            eprint!("fork after turn [1-{}]: ", starts.len());
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim()
                .parse()
                .with_context(|| format!("{:?} is not a turn number", line.trim()))?
        }
    };
    let name = name
        .map(|n| check_name(&n).map(str::to_string))
        .transpose()?;
    let meta = app
        .store
        .fork(&id, ForkPoint::Turn(turn), None, name)
        .await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&meta)?);
    } else {
        println!("{}", meta.id);
        eprintln!(
            "forked {id} after turn {turn}: resume with `weft session resume {}`",
            meta.id
        );
    }
    Ok(())
}

/// `weft session delete`.
pub async fn delete(app: &App, id: &str, confirm: bool, with_children: bool) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let meta = app.store.get(&id).await?;
    if !confirm {
        if !std::io::stdin().is_terminal() {
            bail!("refusing to delete {id} without confirmation: pass --confirm");
        }
        if !ask_yes(&format!(
            "delete session {id} ({}, {} messages)?",
            meta.label(),
            meta.message_count
        ))? {
            eprintln!("kept {id}");
            return Ok(());
        }
    }
    let removed = app
        .store
        .delete(
            &id,
            DeleteOptions {
                with_children,
                unless_active: false,
            },
        )
        .await?;
    for r in &removed {
        println!("{r}");
    }
    eprintln!("deleted {} session(s)", removed.len());
    Ok(())
}

/// `weft session cleanup`.
pub async fn cleanup(app: &App, days: u64, dry_run: bool) -> anyhow::Result<()> {
    let what = if dry_run {
        "looking for old sessions"
    } else {
        "removing old sessions"
    };
    let progress = Progress::new(what, 0);
    let age = Duration::from_secs(days.saturating_mul(86_400));
    let report = app.store.cleanup_reporting(age, dry_run, &progress).await?;
    drop(progress);
    for id in &report.removed {
        println!("{id}");
    }
    eprintln!(
        "{} {} session(s) older than {days} day(s){}{}",
        if dry_run { "would remove" } else { "removed" },
        report.removed.len(),
        if report.interrupted.is_empty() {
            String::new()
        } else {
            format!(
                ", {} of them interrupted (active, but the process running them exited mid-turn)",
                report.interrupted.len()
            )
        },
        if report.kept_active.is_empty() {
            String::new()
        } else {
            format!("; kept {} active one(s)", report.kept_active.len())
        }
    );
    Ok(())
}

/// `weft session search`.
pub async fn search(
    app: &App,
    text: &str,
    all_projects: bool,
    limit: usize,
    json_out: bool,
) -> anyhow::Result<()> {
    if text.trim().is_empty() {
        bail!("the search text is empty: give one or more words to find");
    }
    let hits = app
        .store
        .search(&SearchQuery {
            text: text.to_string(),
            project: (!all_projects).then(|| app.project.slug.clone()),
            limit,
        })
        .await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        eprintln!(
            "no messages match {text:?}{}",
            if all_projects {
                ""
            } else {
                " in this project (try --all-projects)"
            }
        );
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for h in hits {
        writeln!(
            out,
            "{}  {:<20}  [{}] {}",
            h.session_id,
            truncate(h.session_name.as_deref().unwrap_or(""), 20),
            h.role,
            h.snippet
        )?;
    }
    Ok(())
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Markdown transcript.
    Md,
    /// One JSON document: metadata, branches, state.
    Json,
    /// The session log, one record per line (without the messages of
    /// deleted branches).
    Jsonl,
    /// The message table as CSV.
    Csv,
    /// The message table as Apache Parquet (needs --output).
    Parquet,
}

/// Which messages a table export holds.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// Only these branches (empty: all).
    pub branches: Vec<String>,
    /// Leave out messages cloned by a split.
    pub exclude_clone: bool,
    /// Leave out loaded messages.
    pub exclude_load: bool,
}

/// `weft session export`.
pub async fn export(
    app: &App,
    id: &str,
    format: ExportFormat,
    output: Option<&std::path::Path>,
    table: &TableOptions,
) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let records = app.store.read_all(&id).await?;
    let view = SessionView::from_records(&records)?;
    let text = match format {
        ExportFormat::Jsonl => {
            // Deleted branches' messages stay in the log, not in exports.
            let deleted = weft_core::branches::deleted_message_seqs(&records);
            let progress = Progress::new("exporting records", records.len() as u64);
            let mut s = String::new();
            for r in records.iter().filter(|r| !deleted.contains(&r.seq)) {
                s.push_str(&serde_json::to_string(r)?);
                s.push('\n');
                progress.inc(1);
            }
            s
        }
        ExportFormat::Json => {
            let branches: Vec<_> = view
                .branches
                .iter()
                .map(|b| {
                    json!({
                        "branch": b.branch,
                        "messages": b.messages.iter().map(|m| &m.message).collect::<Vec<_>>(),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&json!({
                "session": view.meta,
                "branches": branches,
                "state": view.state,
            }))? + "\n"
        }
        ExportFormat::Md => markdown(&view),
        ExportFormat::Csv | ExportFormat::Parquet => {
            return export_table(&view, format, output, table);
        }
    };
    match output {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("exported {id} to {}", path.display());
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}

fn export_table(
    view: &SessionView,
    format: ExportFormat,
    output: Option<&std::path::Path>,
    table: &TableOptions,
) -> anyhow::Result<()> {
    let chosen = (!table.branches.is_empty()).then_some(table.branches.as_slice());
    let messages =
        weft_core::branches::concat_messages(view, chosen, table.exclude_clone, table.exclude_load)
            .map_err(weft_core::SessionError::from)?;
    let rows = weft_core::branches::table_rows(&messages);
    match (format, output) {
        (ExportFormat::Parquet, Some(path)) => crate::table::write_parquet(&rows, path)?,
        (ExportFormat::Parquet, None) => bail!("Parquet is binary: pass --output FILE.parquet"),
        (_, Some(path)) => {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            crate::table::write_csv(&rows, &mut file)?;
        }
        (_, None) => crate::table::write_csv(&rows, &mut std::io::stdout().lock())?,
    }
    if let Some(path) = output {
        eprintln!(
            "exported {} row(s) of {} to {}",
            rows.len(),
            view.meta.id,
            path.display()
        );
    }
    Ok(())
}

fn markdown(view: &SessionView) -> String {
    let meta = &view.meta;
    let mut s = format!("# {}\n\n", meta.name.as_deref().unwrap_or("weft session"));
    s.push_str(&format!(
        "- id: `{}`\n- created: {}\n- profile: {}\n",
        meta.id,
        meta.created_at.to_rfc3339(),
        meta.profile
    ));
    if let Some(m) = &meta.model {
        s.push_str(&format!("- model: {m}\n"));
    }
    s.push_str(&format!(
        "- status: {}\n- turns: {}\n\n",
        meta.status, meta.turn_count
    ));
    for b in &view.branches {
        if view.branches.len() > 1 {
            s.push_str(&format!("## Branch {}\n\n", b.branch.name));
        }
        let mut turn = 0;
        for lm in &b.messages {
            let m = &lm.message;
            match m.role {
                Role::User => {
                    turn += 1;
                    s.push_str(&format!(
                        "### Turn {turn}\n\n**User:** {}\n\n",
                        m.text_content()
                    ));
                }
                Role::Assistant => {
                    for block in &m.content {
                        match block {
                            ContentBlock::Text { text } => s.push_str(&format!("**Assistant:** {text}\n\n")),
                            ContentBlock::ToolCall { name, arguments, .. } => {
                                s.push_str(&format!("> tool call `{name}`\n>\n> ```json\n> {arguments}\n> ```\n\n"))
                            }
                            ContentBlock::Thinking { thinking, .. } => {
                                s.push_str(&format!("<details><summary>thinking</summary>\n\n{thinking}\n\n</details>\n\n"))
                            }
                            _ => {}
                        }
                    }
                }
                Role::Tool => {
                    for block in &m.content {
                        if let ContentBlock::ToolResult {
                            output, is_error, ..
                        } = block
                        {
                            let label = if *is_error {
                                "tool error"
                            } else {
                                "tool result"
                            };
                            s.push_str(&format!("<details><summary>{label}</summary>\n\n```\n{output}\n```\n\n</details>\n\n"));
                        }
                    }
                }
                Role::System => s.push_str(&format!("_system: {}_\n\n", m.text_content())),
            }
        }
    }
    s
}

/// The overridden profile settings on one line (`temperature=0.2, …`).
fn settings_line(s: &weft_core::settings::SettingsOverrides) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &s.model {
        parts.push(format!("model={v}"));
    }
    if let Some(v) = &s.provider {
        parts.push(format!("provider={v}"));
    }
    if let Some(v) = s.temperature {
        parts.push(format!("temperature={v}"));
    }
    if let Some(v) = s.max_tokens {
        parts.push(format!("max_tokens={v}"));
    }
    if let Some(v) = &s.system_prompt {
        parts.push(format!("system_prompt={v:?}"));
    }
    if let Some(v) = &s.tools {
        parts.push(format!("tools=[{}]", v.join(", ")));
    }
    parts.join(", ")
}
