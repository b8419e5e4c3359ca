//! `weft branch …`, `weft mail …` and `weft state …`: the session's
//! branches, the mail between them and its key/value state, changed
//! through records in the session log (so they work on every store).

use std::io::Write;

use anyhow::bail;
use chrono::Utc;
use serde_json::{Value, json};
use weft_core::branches::{self, NewBranch};
use weft_core::log::update_session;
use weft_core::record::{RecordKind, StateDelta};
use weft_core::session::MailCategory;
use weft_core::stored;
use weft_core::{SessionError, SessionId};

use crate::app::App;

/// `weft branch list`.
pub async fn list(app: &App, id: &str, json_out: bool) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let view = app.store.view(&id).await?;
    if json_out {
        let rows: Vec<Value> = view
            .branches
            .iter()
            .map(|b| {
                json!({
                    "branch": b.branch,
                    "messages": b.messages.len(),
                    "default": b.branch.id == view.meta.default_branch,
                    "inbox": view.inbox(&b.branch.id).len(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "  {:<40}  {:<24}  {:>8}  {:>5}  From",
        "ID", "Name", "Messages", "Inbox"
    )?;
    for b in &view.branches {
        let mark = if b.branch.id == view.meta.default_branch {
            "*"
        } else {
            " "
        };
        let from = b
            .branch
            .created_from
            .as_ref()
            .map(|f| format!("split from {} at seq {}", f.branch, f.upto_seq))
            .unwrap_or_default();
        writeln!(
            out,
            "{mark} {:<40}  {:<24}  {:>8}  {:>5}  {from}",
            b.branch.id,
            b.branch.name,
            b.messages.len(),
            view.inbox(&b.branch.id).len()
        )?;
    }
    Ok(())
}

/// `weft branch new`.
pub async fn new(app: &App, id: &str, spec: NewBranch) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let branch = update_session(app.store.as_ref(), &id, |view| {
        Ok(branches::new_branch(view, spec.clone(), Utc::now())?)
    })
    .await?;
    println!("{}", branch.id);
    eprintln!("made branch {:?} in session {id}", branch.name);
    Ok(())
}

/// `weft branch split`.
pub async fn split(app: &App, id: &str, source: &str, name: Option<String>) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let branch = update_session(app.store.as_ref(), &id, |view| {
        Ok(branches::split(view, source, name.clone(), Utc::now())?)
    })
    .await?;
    println!("{}", branch.id);
    eprintln!("split {source:?} into {:?}", branch.name);
    Ok(())
}

/// `weft branch remove`.
pub async fn remove(app: &App, id: &str, branch: &str, delete: bool) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    update_session(app.store.as_ref(), &id, |view| {
        Ok(((), branches::remove_branch(view, branch, delete)?))
    })
    .await?;
    let meta = app.store.get(&id).await?;
    eprintln!(
        "{} branch {branch:?}; the default branch is {}",
        if delete { "deleted" } else { "removed" },
        meta.default_branch
    );
    Ok(())
}

/// `weft branch default`.
pub async fn set_default(app: &App, id: &str, branch: &str) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    update_session(app.store.as_ref(), &id, |view| {
        Ok(((), branches::change_default_branch(view, branch)?))
    })
    .await?;
    eprintln!("the default branch of {id} is now {branch:?}");
    Ok(())
}

fn parse_category(s: &str) -> anyhow::Result<MailCategory> {
    Ok(match s {
        "message" => MailCategory::Message,
        "tool" => MailCategory::Tool,
        "model" => MailCategory::Model,
        other => bail!("unknown mail category {other:?}: use message, tool or model"),
    })
}

/// Parses a value given on the command line: JSON if it parses, else a
/// string.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// `weft mail send`.
pub async fn send(
    app: &App,
    id: &str,
    from: &str,
    to: Option<&str>,
    category: &str,
    item: &str,
) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let category = parse_category(category)?;
    let item = match category {
        MailCategory::Message | MailCategory::Tool => Value::String(item.to_string()),
        MailCategory::Model => parse_value(item),
    };
    let mail = update_session(app.store.as_ref(), &id, |view| {
        Ok(branches::send_mail(
            view,
            from,
            to,
            category,
            item.clone(),
            Utc::now(),
        )?)
    })
    .await?;
    println!("{}", mail.id);
    let names: Vec<String> = mail.to.iter().map(ToString::to_string).collect();
    eprintln!("mail from {} waits for {}", mail.from, names.join(", "));
    Ok(())
}

/// `weft mail list`: mail waiting to be collected.
pub async fn pending(app: &App, id: &str, to: Option<&str>, json_out: bool) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let view = app.store.view(&id).await?;
    let recipient = match to {
        Some(t) => Some(
            view.branch(t)
                .ok_or_else(|| SessionError::from(branches::BranchError::UnknownBranch(t.into())))?
                .branch
                .id
                .clone(),
        ),
        None => None,
    };
    let waiting: Vec<_> = view
        .mail
        .iter()
        .filter(|p| recipient.as_ref().is_none_or(|r| p.waiting.contains(r)))
        .collect();
    if json_out {
        let rows: Vec<Value> = waiting
            .iter()
            .map(|p| json!({"mail": p.mail, "waiting": p.waiting, "seq": p.seq}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if waiting.is_empty() {
        eprintln!("no mail waiting");
    }
    for p in waiting {
        let to: Vec<String> = p.waiting.iter().map(ToString::to_string).collect();
        println!(
            "{}  {} → {}  [{:?}] {}",
            p.mail.id,
            p.mail.from,
            to.join(","),
            p.mail.category,
            p.mail.item
        );
    }
    Ok(())
}

/// `weft mail collect`.
pub async fn collect(
    app: &App,
    id: &str,
    to: Option<&str>,
    from: Option<&str>,
) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let n = update_session(app.store.as_ref(), &id, |view| {
        Ok(branches::collect_mail(view, to, from, Utc::now())?)
    })
    .await?;
    eprintln!("delivered {n} piece(s) of mail");
    Ok(())
}

/// Sets (`Some`) or deletes (`None`) `key` of session `id`, by the rule
/// every front end shares ([`weft_core::stored`]).
async fn change_state(
    app: &App,
    id: &SessionId,
    key: &str,
    value: Option<Value>,
) -> anyhow::Result<()> {
    let meta = app.store.get(id).await?;
    if let Some(delta) = stored::change(app.store.as_ref(), &meta, key, value).await? {
        append_state(app, id, delta).await?;
    }
    Ok(())
}

/// Appends a `state` record to session `id`'s log.
async fn append_state(app: &App, id: &SessionId, delta: StateDelta) -> anyhow::Result<()> {
    update_session(app.store.as_ref(), id, |_| {
        Ok(((), vec![RecordKind::State(delta.clone())]))
    })
    .await?;
    Ok(())
}

/// `weft state get`.
pub async fn get(app: &App, id: &str, key: &str) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let meta = app.store.get(&id).await?;
    match stored::get(app.store.as_ref(), &meta, key).await? {
        Some(v) => println!("{v}"),
        None => bail!("no state key {key:?} in session {id}"),
    }
    Ok(())
}

/// `weft state set`.
pub async fn set(app: &App, id: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    change_state(app, &id, key, Some(parse_value(value))).await
}

/// `weft state delete`.
pub async fn delete(app: &App, id: &str, key: &str) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    change_state(app, &id, key, None).await
}

/// `weft state clear`: every session-local key.
pub async fn clear(app: &App, id: &str) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let delta = StateDelta {
        clear: true,
        ..Default::default()
    };
    append_state(app, &id, delta).await?;
    eprintln!("cleared the state of {id}");
    Ok(())
}

/// `weft state list`: session keys plus the shared `app:` and `user:` keys.
pub async fn list_state(app: &App, id: &str, json_out: bool) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let meta = app.store.get(&id).await?;
    let all = stored::all(app.store.as_ref(), &meta).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for (k, v) in all {
            println!("{k} = {v}");
        }
    }
    Ok(())
}
