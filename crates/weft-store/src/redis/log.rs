//! The session log on Redis: `create`, `get`, `append`, `read`, `tail` and
//! `delete`, each a script or a single read (see `scripts` for the
//! atomic writes). Records travel as the shared codec's JSON lines.
//!
//! This module owns the fold of metadata around an append; it must not
//! know listing, search or turn locks.

use redis::AsyncCommands;
use weft_core::MapRecord;
use weft_core::record::{Record, RecordKind, check_batch};
use weft_core::session::{SessionMeta, SessionStatus};
use weft_core::store::{DeleteOptions, StoreError};
use weft_core::view::creation_batch;
use weft_core::{BranchId, SessionId};

use super::scripts;
use super::{RedisStore, decode_meta, encode_json, not_found};
use crate::codec;

/// Tries of one append whose cached metadata proves stale.
const MAX_TRIES: usize = 3;

/// A session's updated_at as a sorted-set score (µs since the epoch).
pub(super) fn score(meta: &SessionMeta) -> i64 {
    meta.updated_at.timestamp_micros()
}

impl RedisStore {
    fn lines(&self, records: &[Record]) -> Result<Vec<String>, StoreError> {
        records
            .iter()
            .map(|r| codec::encode_line(r).map_err(|e| e.into_store("redis", "records")))
            .collect()
    }

    /// See `Store::create`.
    pub(super) async fn create_session(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        let id = meta.id.clone();
        let (records, folded) = creation_batch(&meta, initial)?;
        let lines = self.lines(&records)?;
        let meta_json = encode_json(&folded)?;
        let k = &self.keys;
        let mut conn = self.conn().await?;
        let created: i64 = scripts::CREATE
            .key(k.meta(&id))
            .key(k.log(&id))
            .key(k.all_sessions())
            .key(k.project(&folded.project.slug))
            .key(k.ids())
            .key(k.events(&id))
            .key(k.turns(&id))
            .arg(&meta_json)
            .arg(score(&folded))
            .arg(id.as_str())
            .arg(self.ttl_ms())
            .arg(lines)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        if created == 0 {
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        self.meta_cache.put(folded.clone(), meta_json);
        Ok(folded)
    }

    /// The metadata and its JSON as stored, or `None` when the session does
    /// not exist.
    async fn meta_json(&self, id: &SessionId) -> Result<Option<(SessionMeta, String)>, StoreError> {
        let mut conn = self.conn().await?;
        let json: Option<String> = conn
            .get(self.keys.meta(id))
            .await
            .map_err(|e| self.err(e))?;
        json.map(|j| decode_meta(&j, id.as_str()).map(|m| (m, j)))
            .transpose()
    }

    /// See `Store::get`.
    /// The copy read is kept as the append's hint (`MetaCache`): a write
    /// that follows a read (the daemon checks a session before adding to
    /// it) folds from it, even when another process wrote last.
    pub(super) async fn get_session(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let (meta, json) = self.meta_json(id).await?.ok_or_else(|| not_found(id))?;
        self.meta_cache.put(meta.clone(), json);
        Ok(meta)
    }

    /// See `Store::append`: the metadata at `expected_seq` is folded with
    /// the batch here, from this process's copy (`MetaCache`) when it has
    /// one, else from a read; the script writes both only if the log's head
    /// is still `expected_seq` and the stored metadata is still that copy
    /// (a stale copy costs a read and one more try). With a cached copy an
    /// append is one round trip.
    pub(super) async fn append_batch(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        check_batch(expected_seq, &records)?;
        let conflict = |actual: u64| StoreError::Conflict {
            id: id.to_string(),
            expected: expected_seq,
            actual,
        };
        let fenced = Record::batch_turn(&records);
        let lines = self.lines(&records)?;
        let k = &self.keys;
        let branch = fenced.map_or_else(BranchId::main, |(_, b)| b.clone());
        let cache = &self.meta_cache;
        for _ in 0..MAX_TRIES {
            let (mut meta, old_json) = match cache.get(id, expected_seq) {
                Some(hit) => hit,
                None => {
                    let (meta, json) = self.meta_json(id).await?.ok_or_else(|| not_found(id))?;
                    // A turn's batch goes to the script even then: a turn
                    // that lost its lease is told so (not sent to rebase on
                    // a conflict).
                    if meta.last_seq != expected_seq && fenced.is_none() {
                        return Err(conflict(meta.last_seq));
                    }
                    (meta, json)
                }
            };
            for r in &records {
                meta.apply(r);
            }
            let new_json = encode_json(&meta)?;
            let mut conn = self.conn().await?;
            let reply: Vec<i64> = scripts::APPEND
                .key(k.meta(id))
                .key(k.log(id))
                .key(k.all_sessions())
                .key(k.project(&meta.project.slug))
                .key(k.events(id))
                .key(k.turns(id))
                .key(k.turn(id, &branch))
                .arg(expected_seq)
                .arg(&new_json)
                .arg(score(&meta))
                .arg(id.as_str())
                .arg(self.ttl_ms())
                .arg(fenced.map_or("", |(t, _)| t.as_str()))
                .arg(branch.as_str())
                .arg(&old_json)
                .arg(&lines)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            match reply.as_slice() {
                [0, _] => {
                    cache.put(meta.clone(), new_json);
                    return Ok(meta);
                }
                [4, _] => cache.forget(id),
                other => {
                    cache.forget(id);
                    return Err(match other {
                        [1, actual] => conflict(u64::try_from(*actual).unwrap_or(0)),
                        [2, _] => not_found(id),
                        [3, _] => StoreError::LeaseLost {
                            id: id.to_string(),
                            branch: branch.to_string(),
                            turn: fenced.map_or_else(String::new, |(t, _)| t.to_string()),
                        },
                        other => self.unexpected("append", other),
                    });
                }
            }
        }
        Err(StoreError::Backend {
            backend: "redis",
            message: format!("session {id}: its metadata kept changing under the append"),
        })
    }

    pub(super) fn unexpected(&self, what: &str, reply: &[i64]) -> StoreError {
        StoreError::Backend {
            backend: "redis",
            message: format!("unexpected reply {reply:?} from the {what} script"),
        }
    }

    /// Errors with NotFound unless the session exists.
    async fn ensure_exists(&self, id: &SessionId) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let exists: bool = conn
            .exists(self.keys.meta(id))
            .await
            .map_err(|e| self.err(e))?;
        if exists { Ok(()) } else { Err(not_found(id)) }
    }

    /// The log entries at list indexes `start..=stop` (Redis semantics,
    /// negative from the end); NotFound when the session has none.
    /// Each record is passed through `map` as it is decoded (in parallel
    /// when there are many).
    async fn range(
        &self,
        id: &SessionId,
        start: isize,
        stop: isize,
        map: &dyn MapRecord,
    ) -> Result<Vec<Record>, StoreError> {
        let mut conn = self.conn().await?;
        let lines: Vec<String> = conn
            .lrange(self.keys.log(id), start, stop)
            .await
            .map_err(|e| self.err(e))?;
        if lines.is_empty() {
            self.ensure_exists(id).await?;
        }
        codec::decode_rows(
            lines.iter().map(String::as_str),
            &format!("redis key s:{id}:log"),
            map,
        )
    }

    /// See `Store::read`.
    pub(super) async fn read_records(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: &dyn MapRecord,
    ) -> Result<Vec<Record>, StoreError> {
        if limit == Some(0) {
            self.ensure_exists(id).await?;
            return Ok(Vec::new());
        }
        let start = isize::try_from(from_seq.max(1) - 1).unwrap_or(isize::MAX);
        let stop = match limit {
            Some(n) => start.saturating_add(isize::try_from(n).unwrap_or(isize::MAX) - 1),
            None => -1,
        };
        self.range(id, start, stop, map).await
    }

    /// See `Store::tail`.
    pub(super) async fn tail_records(
        &self,
        id: &SessionId,
        n: usize,
    ) -> Result<Vec<Record>, StoreError> {
        if n == 0 {
            self.ensure_exists(id).await?;
            return Ok(Vec::new());
        }
        let n = isize::try_from(n).unwrap_or(isize::MAX);
        self.range(id, -n, -1, codec::PLAIN).await
    }

    /// See `Store::delete`. Each session goes in one script; with
    /// children, descendants are found by scanning the metadata (parents
    /// are not indexed).
    pub(super) async fn delete_sessions(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let root = self.get_session(id).await?;
        if options.unless_active && root.status == SessionStatus::Active {
            return Err(refused(id));
        }
        let mut doomed = vec![(root.id.clone(), root.project.slug.clone())];
        if options.with_children {
            let all = self.all_metas().await?;
            let mut i = 0;
            while i < doomed.len() {
                let parent = doomed[i].0.clone();
                for m in &all {
                    if m.parent_id.as_ref() == Some(&parent)
                        && !doomed.iter().any(|(d, _)| d == &m.id)
                    {
                        doomed.push((m.id.clone(), m.project.slug.clone()));
                    }
                }
                i += 1;
            }
        }
        let mut removed = Vec::new();
        for (n, (sid, slug)) in doomed.into_iter().enumerate() {
            let k = &self.keys;
            let mut conn = self.conn().await?;
            let code: i64 = scripts::DELETE
                .key(k.meta(&sid))
                .key(k.log(&sid))
                .key(k.events(&sid))
                .key(k.turns(&sid))
                .key(k.all_sessions())
                .key(k.project(&slug))
                .key(k.ids())
                .arg(sid.as_str())
                .arg(if n == 0 && options.unless_active {
                    "1"
                } else {
                    "0"
                })
                .arg(k.turn_prefix(&sid))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            match code {
                0 => removed.push(sid),
                1 if n == 0 => return Err(not_found(&sid)),
                1 => {}
                2 => return Err(refused(&sid)),
                other => return Err(self.unexpected("delete", &[other])),
            }
        }
        Ok(removed)
    }
}

fn refused(id: &SessionId) -> StoreError {
    StoreError::Refused(format!("session {id} is active: it cannot be removed"))
}
