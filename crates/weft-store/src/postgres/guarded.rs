//! The guarded append ([`Store::append_guarded`]) for [`PostgresStore`]: a
//! batch of messages numbered, checked and folded into the session's
//! metadata where the session row lives, in one statement; and how a row's
//! metadata is read back ([`META_COLUMNS`], [`meta_of_row`]).
//!
//! The one-statement append of `log` needs the session's head and a copy of
//! its metadata; a process that did not write the session last (another
//! daemon behind the same load balancer did) would read the row first, a
//! second statement per append. Here the statement reads nothing back
//! first: it updates the row only if the session passes the
//! [`HeadGuard`] there (its `status` and `default_branch` columns), moves
//! `last_seq` by the batch's length, adds the batch's [`MessageFold`] to
//! the row's pending fold (the `fold_…` columns: counts and usage summed,
//! the latest last prompt and time, the first model) and inserts the
//! records, numbered after the head it found, with their search-queue
//! entries. The row lock orders it with every other append (a writer that
//! waited re-checks the guard on the row as committed before it).
//!
//! The metadata JSON (`meta`) is left as it was: parsing and printing it
//! on the server cost PostgreSQL about 1.4× the CPU of the plain append
//! (measured, BENCHMARKS.md, shared stores round 8). Every read of a row
//! applies the pending fold to `meta` ([`MessageFold::apply_to`], which
//! gives what folding the messages one by one gives, saturating counts
//! included); the next plain append writes the merged metadata and clears
//! the fold.
//!
//! Each record's JSON is encoded by the client, numbered from 1; the
//! statement puts the seq it assigns in place of that number (the JSON
//! starts with `{"v":…,"seq":N`, which the client checks, falling back to
//! the read-then-append route otherwise). Batches that are not all
//! messages take that route too.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use weft_core::SessionId;
use weft_core::message::Usage;
use weft_core::record::{RECORD_VERSION, Record, RecordKind};
use weft_core::session::SessionMeta;
use weft_core::store::{HeadGuard, StoreError, append_guarded_after_get};
use weft_core::view::MessageFold;

use super::log::parse_meta;
use super::{BACKEND, PostgresStore, corrupt, db, encode, is_unique_violation, not_found};
use crate::codec;
use crate::util::{to_i64, to_u64};

/// The columns a session row's metadata is read from, in the order
/// [`meta_of_row`] takes them: the head, the metadata JSON and the fold of
/// guarded appends pending on it (a macro, so that statements can
/// `concat!` it; [`META_COLUMNS`] otherwise).
macro_rules! meta_columns {
    () => {
        "last_seq, meta, fold_updated, fold_messages, fold_turns, fold_usage::text, \
         fold_prompt, fold_model"
    };
}
pub(super) use meta_columns;

/// The columns of [`meta_columns!`].
pub(super) const META_COLUMNS: &str = meta_columns!();

/// How many columns [`META_COLUMNS`] names (counted from the list, so the
/// two cannot drift apart).
pub(super) const META_WIDTH: usize = column_count(META_COLUMNS);

/// The columns a comma-separated list names.
const fn column_count(list: &str) -> usize {
    let bytes = list.as_bytes();
    let (mut i, mut n) = (0, 1);
    while i < bytes.len() {
        if bytes[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
}

/// What a plain write of `meta` sets besides it: no fold pending (the
/// metadata written has it). A macro, so that statements can `concat!` it.
macro_rules! fold_cleared {
    () => {
        "fold_updated = NULL, fold_messages = NULL, fold_turns = NULL, \
         fold_usage = NULL, fold_prompt = NULL, fold_model = NULL"
    };
}
pub(super) use fold_cleared;

/// Session `id`'s metadata from the [`META_COLUMNS`] of `row` starting
/// at column `at`: the JSON with the pending fold applied.
pub(super) fn meta_of_row(row: &Row, at: usize, id: &str) -> Result<SessionMeta, StoreError> {
    let location = || format!("sessions ({id})");
    let mut meta = parse_meta(row.try_get(at + 1).map_err(db)?, id)?;
    let updated: Option<&str> = row.try_get(at + 2).map_err(db)?;
    let Some(updated) = updated else {
        return Ok(meta);
    };
    let updated_at: DateTime<Utc> =
        serde_json::from_str(updated).map_err(|e| corrupt(location(), e))?;
    let count = |i: usize| -> Result<u64, StoreError> {
        let n: Option<i64> = row.try_get(at + i).map_err(db)?;
        Ok(to_u64(n.unwrap_or(0)))
    };
    let usage: Option<&str> = row.try_get(at + 5).map_err(db)?;
    let usage: Usage = match usage {
        Some(json) => serde_json::from_str(json).map_err(|e| corrupt(location(), e))?,
        None => Usage::default(),
    };
    let fold = MessageFold {
        records: 0,
        updated_at,
        messages: count(3)?,
        turns: count(4)?,
        usage,
        last_prompt: row.try_get(at + 6).map_err(db)?,
        model: row.try_get(at + 7).map_err(db)?,
    };
    fold.apply_to(&mut meta, to_u64(row.try_get(at).map_err(db)?));
    Ok(meta)
}

/// The guarded append (see the module docs). Parameters: `$1` session id,
/// `$2` the status the guard requires, `$3` its default branch, `$4`/`$5`
/// the records' kinds and their JSON after the seq, `$6` how many, `$7`
/// the last record's time in µs, `$8` that time as JSON, `$9`/`$10` the
/// messages and user messages, `$11` the usage as JSON (NULL: none), `$12`
/// the new last prompt (NULL: unchanged), `$13` the model an unset one
/// takes (NULL: none), `$14` the default branch of a row that names none,
/// `$15` each record's JSON before its seq. Returns the row's
/// [`META_COLUMNS`] after the update (all NULL when nothing was written)
/// and whether the session exists.
const GUARDED_SQL: &str = concat!(
    "WITH upd AS (
    UPDATE sessions SET last_seq = last_seq + $6, updated_us = $7, fold_updated = $8,
        fold_messages = coalesce(fold_messages, 0) + $9::bigint,
        fold_turns = coalesce(fold_turns, 0) + $10::bigint,
        fold_usage = CASE WHEN $11::text IS NULL THEN fold_usage ELSE
            coalesce(fold_usage, '{}'::jsonb) || (SELECT jsonb_object_agg(k, least(
                coalesce((fold_usage ->> k)::numeric, 0) + v::numeric, 18446744073709551615))
                FROM jsonb_each_text($11::text::jsonb) AS e(k, v)) END,
        fold_prompt = coalesce($12::text, fold_prompt),
        fold_model = coalesce(fold_model, $13::text)
    WHERE id = $1 AND status = $2 AND coalesce(default_branch, $14) = $3
    RETURNING ",
    meta_columns!(),
    "
), ins AS (
    INSERT INTO records (session_id, seq, kind, record)
    SELECT $1, h.last_seq - $6 + u.i, u.kind, $15 || (h.last_seq - $6 + u.i) || u.rest
    FROM upd AS h, unnest($4::text[], $5::text[]) WITH ORDINALITY AS u(kind, rest, i)
), queued AS (
    INSERT INTO search_queue (session_id, seq)
    SELECT $1, h.last_seq - $6 + s FROM upd AS h, generate_series(1::bigint, $6) AS s
)
SELECT u.*, EXISTS (SELECT 1 FROM sessions WHERE id = $1)
FROM (VALUES (1)) AS one (x) LEFT JOIN upd AS u ON true"
);

/// What every record's JSON starts with, before its seq.
fn seq_prefix() -> String {
    format!("{{\"v\":{RECORD_VERSION},\"seq\":")
}

impl PostgresStore {
    pub(super) async fn append_guarded_batch(
        &self,
        id: &SessionId,
        guard: &HeadGuard,
        kinds: Vec<RecordKind>,
    ) -> Result<Option<(Vec<Record>, SessionMeta)>, StoreError> {
        // Numbered from 1 here; the statement numbers them after the head.
        let mut records = Record::batch(0, kinds);
        let prefix = seq_prefix();
        let (Some(fold), Some(rests)) = (MessageFold::of(&records), after_seqs(&records, &prefix)?)
        else {
            let kinds = records.into_iter().map(|r| r.kind).collect();
            return append_guarded_after_get(self, id, guard, kinds).await;
        };
        let kinds: Vec<&str> = records.iter().map(|r| r.kind.name()).collect();
        let usage = if fold.usage.is_empty() {
            None
        } else {
            Some(encode(&fold.usage)?)
        };
        let conn = self.lane().await?;
        let stmt = conn.prepare_cached(GUARDED_SQL).await.map_err(db)?;
        let default_branch = weft_core::BranchId::default();
        let result = conn
            .query_one(
                &stmt,
                &[
                    &id.as_str(),
                    &guard.status.as_str(),
                    &guard.default_branch.as_str(),
                    &kinds,
                    &rests,
                    &to_i64(fold.records),
                    &fold.updated_at.timestamp_micros(),
                    &encode(&fold.updated_at)?,
                    &to_i64(fold.messages),
                    &to_i64(fold.turns),
                    &usage,
                    &fold.last_prompt,
                    &fold.model,
                    &default_branch.as_str(),
                    &prefix,
                ],
            )
            .await;
        let row = match result {
            Ok(row) => row,
            Err(e) => {
                self.inner.meta_cache.forget(id);
                if is_unique_violation(&e) {
                    // Only a log holding records past its row's head gets
                    // here: every writer moves both in one transaction.
                    return Err(StoreError::Corrupt {
                        location: format!("records ({id})"),
                        detail: "the log holds records after the session's head".into(),
                    });
                }
                return Err(db(e));
            }
        };
        let (head, json, exists): (Option<i64>, Option<String>, bool) =
            (row.get(0), row.get(1), row.get(META_WIDTH));
        let (Some(head), Some(json)) = (head, json) else {
            return if exists { Ok(None) } else { Err(not_found(id)) };
        };
        let meta = meta_of_row(&row, 0, id.as_str())?;
        let first = to_u64(head).saturating_sub(fold.records);
        for r in &mut records {
            r.seq += first;
        }
        self.inner.meta_cache.put(meta.clone(), json);
        self.inner.indexer.wrote(self);
        Ok(Some((records, meta)))
    }
}

/// Each record's JSON after its seq (the records numbered from 1, every
/// line starting with `prefix` and then that number), or `None` when one
/// does not start so.
fn after_seqs(records: &[Record], prefix: &str) -> Result<Option<Vec<String>>, StoreError> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let line = codec::encode_line(r).map_err(|e| e.into_store(BACKEND, "records"))?;
        let Some(rest) = line
            .strip_prefix(prefix)
            .and_then(|l| l.strip_prefix(r.seq.to_string().as_str()))
            .filter(|rest| rest.starts_with([',', '}']))
        else {
            return Ok(None);
        };
        out.push(rest.to_string());
    }
    Ok(Some(out))
}
