//! A session's history as the log holds it: `weft session rewind` (undo
//! the last turns of a branch; the records stay) and `weft session show
//! --log` (every record, rewound messages marked as such).

use std::collections::HashSet;
use std::io::Write;

use anyhow::bail;
use serde_json::json;
use weft_core::log::update_session;
use weft_core::rewind::{Rewound, rewind};
use weft_core::view::SessionView;
use weft_core::{RecordKind, SessionError, SessionId};

use crate::app::App;
use crate::watch_cmd::text_line;

/// `weft session rewind ID [N] [--branch B]`: refused while a turn runs on
/// the branch (in any process sharing the store).
pub async fn rewind_cmd(
    app: &App,
    id: &str,
    turns: u64,
    branch: Option<&str>,
    json_out: bool,
) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let done = rewind_stored(app, &id, branch, turns).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!(done))?);
    } else {
        println!(
            "rewound {} turn(s) of branch {} in {id}: {} message(s) left the conversation (the log keeps them: `weft session show {id} --log`)",
            done.turns, done.branch, done.messages
        );
    }
    Ok(())
}

/// Rewinds `turns` turns of `branch` (the default when None) of stored
/// session `id`.
pub async fn rewind_stored(
    app: &App,
    id: &SessionId,
    branch: Option<&str>,
    turns: u64,
) -> anyhow::Result<Rewound> {
    let live: Vec<_> = app
        .store
        .turn_locks(id)
        .await?
        .into_iter()
        .filter(|l| l.live)
        .collect();
    let done = update_session(app.store.as_ref(), id, |view| {
        let (done, kinds) = rewind(view, branch, turns).map_err(SessionError::from)?;
        if let Some(lock) = live.iter().find(|l| l.branch == done.branch) {
            let who = lock
                .holder
                .as_ref()
                .map_or_else(|| "another process".to_string(), |h| h.describe());
            return Err(SessionError::Invalid(format!(
                "branch {} of session {id} is running a turn in {who}: rewind after it ends",
                done.branch
            )));
        }
        Ok((done, kinds))
    })
    .await?;
    Ok(done)
}

/// Prints every record of the session, one line each, marking messages
/// that a rewind took out of their branch (or whose branch was removed);
/// the messages of a deleted branch are marked with their content left
/// out.
pub async fn print_log(app: &App, id: &SessionId) -> anyhow::Result<()> {
    let records = app.store.read_all(id).await?;
    let view = SessionView::from_records(&records)?;
    let kept: HashSet<u64> = view
        .branches
        .iter()
        .flat_map(|b| b.messages.iter().map(|m| m.seq))
        .collect();
    let branches: HashSet<_> = view.branches.iter().map(|b| b.branch.id.clone()).collect();
    let deleted = weft_core::branches::deleted_message_seqs(&records);
    let mut out = std::io::stdout().lock();
    writeln!(out, "Log")?;
    for r in &records {
        if let RecordKind::Message(m) = &r.kind
            && deleted.contains(&r.seq)
        {
            writeln!(
                out,
                "  #{:<5} message [{}] {}: (branch deleted)",
                r.seq, m.branch, m.role
            )?;
            continue;
        }
        let mut line = text_line(r);
        if let RecordKind::Message(m) = &r.kind {
            if !branches.contains(&m.branch) {
                line.push_str("   (branch removed)");
            } else if !kept.contains(&r.seq) {
                line.push_str("   (rewound)");
            }
        }
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// The number of turns of interactive mode's `/undo [N]` (`arg` is what
/// follows `/undo`; 1 when empty).
pub fn undo_turns(arg: &str) -> anyhow::Result<u64> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Ok(1);
    }
    match arg.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("/undo takes a number of turns (1 or more), e.g. /undo 2"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_arguments_parse() {
        assert_eq!(undo_turns("").ok(), Some(1));
        assert_eq!(undo_turns(" 3 ").ok(), Some(3));
        assert!(undo_turns("0").is_err());
        assert!(undo_turns("x").is_err());
    }
}
