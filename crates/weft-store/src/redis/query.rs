//! Reads across sessions on Redis — `list` (sorted sets), `find_ids`
//! (a lexicographic sorted set), `search` (a scan: there is no server-side
//! text index) — plus shared state and kernel events.
//!
//! This module must not know the append path or turn locks.

use redis::AsyncCommands;
use serde_json::{Map, Value};
use weft_core::SessionId;
use weft_core::record::StateDelta;
use weft_core::session::SessionMeta;
use weft_core::store::{ListQuery, Page, SearchHit, SearchQuery, StoreError, list_order};

use super::{REDIS_EVENTS_CAP, RedisStore, decode_meta, encode_json, not_found, scripts};
use crate::codec;

/// How many metadata keys one `MGET` reads.
const CHUNK: usize = 500;

impl RedisStore {
    /// The metadata of `ids` (`None` for a session whose keys are gone:
    /// deleted meanwhile, or expired by the TTL).
    async fn metas_of(&self, ids: &[String]) -> Result<Vec<Option<SessionMeta>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self.conn().await?;
        for chunk in ids.chunks(CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .filter_map(|id| SessionId::parse(id).ok())
                .map(|id| self.keys.meta(&id))
                .collect();
            if keys.len() != chunk.len() {
                return Err(StoreError::Corrupt {
                    location: "redis session index".into(),
                    detail: "an index holds a malformed session id".into(),
                });
            }
            let jsons: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            for (id, json) in chunk.iter().zip(jsons) {
                out.push(json.map(|j| decode_meta(&j, id)).transpose()?);
            }
        }
        Ok(out)
    }

    /// Every session's metadata (for scans: delete with children).
    pub(super) async fn all_metas(&self) -> Result<Vec<SessionMeta>, StoreError> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .zrange(self.keys.all_sessions(), 0, -1)
            .await
            .map_err(|e| self.err(e))?;
        Ok(self.metas_of(&ids).await?.into_iter().flatten().collect())
    }

    /// Drops index entries of sessions whose keys expired.
    async fn forget(&self, index: &str, gone: Vec<String>) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let _: () = redis::pipe()
            .zrem(index, &gone)
            .ignore()
            .zrem(self.keys.all_sessions(), &gone)
            .ignore()
            .zrem(self.keys.ids(), &gone)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// See `Store::list`: walks the project's (or every session's) sorted
    /// set newest first from the cursor, filtering here, until a page and
    /// one more are found.
    pub(super) async fn list_page(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let index = match &query.filter.project {
            Some(slug) => self.keys.project(slug),
            None => self.keys.all_sessions(),
        };
        let max = query
            .cursor
            .as_ref()
            .map(|c| c.updated_at.timestamp_micros().to_string())
            .unwrap_or_else(|| "+inf".into());
        let want = query.limit.max(1) + 1;
        let chunk = (want * 2).clamp(64, 1000);
        let mut found = Vec::new();
        let mut offset = 0usize;
        let mut conn = self.conn().await?;
        loop {
            let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&index)
                .arg(&max)
                .arg("-inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            offset += entries.len();
            let ids: Vec<String> = entries
                .iter()
                .filter(|(id, score)| {
                    query.cursor.as_ref().is_none_or(|c| {
                        (*score as i64, id.as_str())
                            < (c.updated_at.timestamp_micros(), c.id.as_str())
                    })
                })
                .map(|(id, _)| id.clone())
                .collect();
            let mut gone = Vec::new();
            for (id, meta) in ids.iter().zip(self.metas_of(&ids).await?) {
                match meta {
                    Some(m) if query.filter.matches(&m) => found.push(m),
                    Some(_) => {}
                    None => gone.push(id.clone()),
                }
            }
            self.forget(&index, gone).await?;
            if found.len() >= want || entries.len() < chunk {
                break;
            }
        }
        found.sort_by(list_order);
        found.truncate(want);
        Ok(Page::from_sorted(found, query.limit))
    }

    /// See `Store::find_ids`.
    pub(super) async fn find_ids_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let min = if prefix.is_empty() {
            "-".to_string()
        } else {
            format!("[{prefix}")
        };
        let mut conn = self.conn().await?;
        let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.keys.ids())
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(ids
            .into_iter()
            .take_while(|id| id.starts_with(prefix))
            .filter_map(|id| SessionId::parse(&id).ok())
            .collect())
    }

    /// See `Store::search`: a scan of the logs in scope, newest session
    /// first, until the limit (Redis has no text index here).
    pub(super) async fn search_logs(
        &self,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let index = match &query.project {
            Some(slug) => self.keys.project(slug),
            None => self.keys.all_sessions(),
        };
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .zrevrange(&index, 0, -1)
            .await
            .map_err(|e| self.err(e))?;
        let mut metas: Vec<SessionMeta> =
            self.metas_of(&ids).await?.into_iter().flatten().collect();
        metas.sort_by(list_order);
        let mut hits = Vec::new();
        for meta in metas {
            let records = match self.read_records(&meta.id, 1, None, codec::PLAIN).await {
                Ok(r) => r,
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            for r in &records {
                if let Some(hit) = query.hit(&meta, r) {
                    hits.push(hit);
                    if hits.len() >= query.effective_limit() {
                        return Ok(hits);
                    }
                }
            }
        }
        Ok(hits)
    }

    fn parse_state(
        &self,
        ns: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut pairs = pairs;
        pairs.sort();
        pairs
            .into_iter()
            .map(|(k, v)| {
                let value = serde_json::from_str(&v).map_err(|e| StoreError::Corrupt {
                    location: format!("redis key state:{ns} field {k:?}"),
                    detail: e.to_string(),
                })?;
                Ok((k, value))
            })
            .collect()
    }

    /// See `Store::shared_state`.
    pub(super) async fn read_shared_state(
        &self,
        ns: &str,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut conn = self.conn().await?;
        let pairs: Vec<(String, String)> = conn
            .hgetall(self.keys.state(ns))
            .await
            .map_err(|e| self.err(e))?;
        self.parse_state(ns, pairs)
    }

    /// See `Store::update_shared_state`: one script applies the delta
    /// (clear, deletes, sets) key by key, so concurrent writers to other
    /// keys are never lost.
    pub(super) async fn change_shared_state(
        &self,
        ns: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut invocation = scripts::SHARED_STATE.key(self.keys.state(ns));
        invocation
            .arg(if delta.clear { "1" } else { "0" })
            .arg(delta.delete.len())
            .arg(&delta.delete);
        for (k, v) in &delta.set {
            invocation.arg(k).arg(encode_json(v)?);
        }
        let mut conn = self.conn().await?;
        let pairs: Vec<(String, String)> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        self.parse_state(ns, pairs)
    }

    /// See `Store::write_events`.
    pub(super) async fn append_events(
        &self,
        id: &SessionId,
        events: &[Value],
    ) -> Result<(), StoreError> {
        let lines = events
            .iter()
            .map(encode_json)
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.conn().await?;
        let ok: i64 = scripts::EVENTS
            .key(self.keys.events(id))
            .key(self.keys.meta(id))
            .arg(REDIS_EVENTS_CAP)
            .arg(self.ttl_ms())
            .arg(lines)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        if ok == 1 { Ok(()) } else { Err(not_found(id)) }
    }

    /// See `Store::read_events`.
    pub(super) async fn last_events(
        &self,
        id: &SessionId,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
        let mut conn = self.conn().await?;
        let exists: bool = conn
            .exists(self.keys.meta(id))
            .await
            .map_err(|e| self.err(e))?;
        if !exists {
            return Err(not_found(id));
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let n = isize::try_from(limit).unwrap_or(isize::MAX);
        let lines: Vec<String> = conn
            .lrange(self.keys.events(id), -n, -1)
            .await
            .map_err(|e| self.err(e))?;
        lines
            .iter()
            .map(|l| {
                serde_json::from_str(l).map_err(|e| StoreError::Corrupt {
                    location: format!("redis key s:{id}:events"),
                    detail: e.to_string(),
                })
            })
            .collect()
    }
}
