//! `weft session watch`: follows a session's log as any process or node
//! sharing the store writes it (`weft_core::RecordWatch`: woken by the
//! store's live channel on PostgreSQL and Redis, polling with backoff
//! elsewhere).
//!
//! Text output is one line per record (`seq`, kind, branch, and the first
//! line of a message's text); `--json` prints each record as its JSON line
//! (the `export --format jsonl` form). It runs until interrupted, until
//! `--limit` records were printed, or until the session is deleted.

use std::io::Write;

use anyhow::Context;
use weft_core::{Record, RecordKind, RecordWatch, StoreError};

use crate::app::App;

/// How many characters of a message a text line shows.
const PREVIEW: usize = 100;

/// What `weft session watch` prints.
pub struct WatchOptions {
    /// Start after this seq (None: after the current head).
    pub after: Option<u64>,
    /// Stop after this many records.
    pub limit: Option<usize>,
    /// One JSON record per line.
    pub json: bool,
}

/// `weft session watch ID`.
pub async fn watch(app: &App, id: &str, options: &WatchOptions) -> anyhow::Result<()> {
    let id = app.resolve(id).await?;
    let after = match options.after {
        Some(n) => n,
        None => app.store.get(&id).await?.last_seq,
    };
    let mut watch = RecordWatch::start(app.store.clone(), &id, after).await?;
    let mut printed = 0usize;
    let mut out = std::io::stdout().lock();
    while options.limit.is_none_or(|l| printed < l) {
        let record = tokio::select! {
            r = watch.next() => r,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let record = match record {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => {
                eprintln!("session {id} was deleted");
                return Ok(());
            }
            Err(e) => return Err(e).context("cannot read the session log"),
        };
        let line = if options.json {
            serde_json::to_string(&record)?
        } else {
            text_line(&record)
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        printed += 1;
    }
    Ok(())
}

/// `#seq kind [branch] preview`.
pub(crate) fn text_line(record: &Record) -> String {
    let mut line = format!("#{:<5} {}", record.seq, record.kind.name());
    if let Some(branch) = record.branch.as_ref().or_else(|| record.kind.branch()) {
        line.push_str(&format!(" [{branch}]"));
    }
    if let RecordKind::Message(m) = &record.kind {
        let text = m.text_content();
        let first = text.lines().next().unwrap_or("");
        let mut preview: String = first.chars().take(PREVIEW).collect();
        if preview.len() < text.len() {
            preview.push('…');
        }
        line.push_str(&format!(" {}: {preview}", m.role));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::BranchId;
    use weft_core::message::{Message, Role};

    #[test]
    fn a_text_line_names_seq_kind_branch_and_the_start_of_the_text() {
        let r = Record::batch(
            4,
            [RecordKind::message(Message::text(
                BranchId::main(),
                Role::Assistant,
                "hello\nsecond line",
            ))],
        )
        .remove(0);
        let line = text_line(&r);
        assert!(line.starts_with("#5"), "{line}");
        assert!(line.contains("message [main] assistant: hello…"), "{line}");
    }
}
