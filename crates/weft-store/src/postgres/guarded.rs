//! The guarded append ([`Store::append_guarded`]) for [`PostgresStore`]: a
//! batch of messages numbered, checked and folded into the session's
//! metadata where the session row lives, in one statement.
//!
//! The one-statement append of `log` needs the session's head and a copy of
//! its metadata; a process that did not write the session last (another
//! daemon behind the same load balancer did) would read the row first, a
//! second statement per append. Here the statement reads nothing back
//! first: it updates the row only if the session passes the
//! [`HeadGuard`] there (its `status` column, the metadata's default
//! branch), moves `last_seq` by the batch's length, applies the batch's
//! [`MessageFold`] to the metadata as `jsonb` (counts and usage added and
//! capped at `u64::MAX`, last prompt, model when unset, head, time: what
//! `SessionMeta::apply` does to a message) and inserts the records,
//! numbered after the head it found, with its search-queue entries. The
//! row lock orders it with every other append (a writer that waited
//! re-checks the guard on the row as committed before it).
//!
//! Each record's JSON is encoded by the client, numbered from 1; the
//! statement puts the seq it assigns in place of that number (the JSON
//! starts with `{"v":…,"seq":N`, which the client checks, falling back to
//! the read-then-append route otherwise). Batches that are not all
//! messages take that route too.

use weft_core::SessionId;
use weft_core::record::{RECORD_VERSION, Record, RecordKind};
use weft_core::session::SessionMeta;
use weft_core::store::{HeadGuard, StoreError, append_guarded_after_get};
use weft_core::view::MessageFold;

use super::log::parse_meta;
use super::{BACKEND, PostgresStore, db, encode, is_unique_violation, not_found};
use crate::codec;
use crate::util::{to_i64, to_u64};

/// The guarded append (see the module docs). Parameters: `$1` session id,
/// `$2` the status the guard requires, `$3` its default branch, `$4`/`$5`
/// the records' kinds and their JSON after the seq, `$6` how many, `$7`
/// the last record's time in µs, `$8` that time as JSON, `$9`/`$10` the
/// messages and user messages, `$11` the usage as JSON (NULL: none), `$12`
/// the new last prompt (NULL: unchanged), `$13` the model an unset one
/// takes (NULL: none), `$14` the default branch of metadata that names
/// none, `$15` each record's JSON before its seq. Returns (new head, new
/// metadata JSON), both NULL when nothing was written, and whether the
/// session exists.
const GUARDED_SQL: &str = "WITH upd AS (
    UPDATE sessions SET last_seq = last_seq + $6, updated_us = $7,
        meta = (SELECT (j
            || jsonb_build_object(
                'last_seq', last_seq + $6,
                'updated_at', $8::text::jsonb,
                'message_count',
                    least(coalesce((j ->> 'message_count')::numeric, 0) + $9::bigint, 18446744073709551615),
                'turn_count',
                    least(coalesce((j ->> 'turn_count')::numeric, 0) + $10::bigint, 18446744073709551615))
            || CASE WHEN $11::text IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('usage',
                coalesce(j -> 'usage', '{}'::jsonb) || coalesce((SELECT jsonb_object_agg(k, least(
                    coalesce((j -> 'usage' ->> k)::numeric, 0) + v::numeric, 18446744073709551615))
                    FROM jsonb_each_text($11::text::jsonb) AS e(k, v)), '{}'::jsonb)) END
            || CASE WHEN $12::text IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('last_prompt', $12::text) END
            || CASE WHEN $13::text IS NULL OR (j ->> 'model') IS NOT NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('model', $13::text) END
            )::text FROM (SELECT meta::jsonb AS j) AS old)
    WHERE id = $1 AND status = $2 AND coalesce(meta::jsonb ->> 'default_branch', $14) = $3
    RETURNING last_seq, meta
), ins AS (
    INSERT INTO records (session_id, seq, kind, record)
    SELECT $1, h.last_seq - $6 + u.i, u.kind, $15 || (h.last_seq - $6 + u.i) || u.rest
    FROM upd AS h, unnest($4::text[], $5::text[]) WITH ORDINALITY AS u(kind, rest, i)
), queued AS (
    INSERT INTO search_queue (session_id, seq)
    SELECT $1, h.last_seq - $6 + s FROM upd AS h, generate_series(1::bigint, $6) AS s
)
SELECT (SELECT last_seq FROM upd), (SELECT meta FROM upd), EXISTS (SELECT 1 FROM sessions WHERE id = $1)";

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
            (row.get(0), row.get(1), row.get(2));
        let (Some(head), Some(json)) = (head, json) else {
            return if exists { Ok(None) } else { Err(not_found(id)) };
        };
        let meta = parse_meta(&json, id.as_str())?;
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
