//! Reads across sessions on DynamoDB — `list` (the `by-project` /
//! `by-update` indexes, keyset paging on `lkey`), `find_ids` (the `by-id`
//! index), `search` (a scan: there is no text index) — plus shared state
//! (an item per namespace, optimistic concurrency on a version) and kernel
//! events.
//!
//! This module must not know the append path or turn locks.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use serde_json::{Map, Value};
use weft_core::SessionId;
use weft_core::record::StateDelta;
use weft_core::session::SessionMeta;
use weft_core::store::{ListQuery, Page, SearchHit, SearchQuery, StoreError, list_order};

use super::log::Expr;
use super::table::{BY_ID, BY_PROJECT, BY_UPDATE};
use super::{
    DynamoStore, EVENTS_CAP, Item, build_err, corrupt, encode_json, ev_sk, get_n, get_s, list_key,
    n, not_found, row_meta, s,
};

/// How many shared-state writes are tried before giving up.
const STATE_RETRIES: usize = 200;

impl DynamoStore {
    /// One page of an index query newest first: session rows (with their
    /// metadata) of `project` (or all) below `before` (an `lkey`).
    async fn index_page(
        &self,
        project: Option<&str>,
        before: Option<&str>,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<SessionMeta>, Option<Item>), StoreError> {
        let db = self.db().await?;
        let (index, part_attr, part) = match project {
            Some(p) => (BY_PROJECT, "project", p.to_string()),
            None => (BY_UPDATE, "all", "ALL".to_string()),
        };
        let mut kc = "#p = :p".to_string();
        let mut q = db
            .query()
            .table_name(self.table())
            .index_name(index)
            .expression_attribute_names("#p", part_attr)
            .expression_attribute_values(":p", s(part))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start);
        if let Some(b) = before {
            kc.push_str(" AND #lk < :lk");
            q = q
                .expression_attribute_names("#lk", "lkey")
                .expression_attribute_values(":lk", s(b));
        }
        let page = q
            .key_condition_expression(kc)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let mut metas = Vec::new();
        for item in page.items() {
            if let Some((mut meta, head)) = row_meta(item)? {
                meta.last_seq = head;
                metas.push(meta);
            }
        }
        Ok((metas, page.last_evaluated_key().cloned()))
    }

    /// Every session's metadata (of `project`, or all), newest first.
    pub(super) async fn all_metas(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<SessionMeta>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let (metas, next) = self.index_page(project, None, 1000, start).await?;
            out.extend(metas);
            match next {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// See `Store::list`: walks the project's (or every session's) index
    /// newest first from the cursor, filtering here, until a page and one
    /// more are found.
    pub(super) async fn list_page(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let before = query
            .cursor
            .as_ref()
            .map(|c| list_key(c.updated_at.timestamp_micros(), c.id.as_str()));
        let want = query.limit.max(1) + 1;
        let chunk = i32::try_from((want * 2).clamp(64, 1000)).unwrap_or(1000);
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let (metas, next) = self
                .index_page(
                    query.filter.project.as_deref(),
                    before.as_deref(),
                    chunk,
                    start,
                )
                .await?;
            found.extend(metas.into_iter().filter(|m| query.filter.matches(m)));
            match next {
                Some(k) if found.len() < want => start = Some(k),
                _ => break,
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
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let db = self.db().await?;
        let mut start = None;
        loop {
            let mut q = db
                .query()
                .table_name(self.table())
                .index_name(BY_ID)
                .expression_attribute_names("#a", "all")
                .expression_attribute_values(":a", s("ALL"))
                .set_exclusive_start_key(start.take());
            q = if prefix.is_empty() {
                q.key_condition_expression("#a = :a")
            } else {
                q.key_condition_expression("#a = :a AND begins_with(#sid, :p)")
                    .expression_attribute_names("#sid", "sid")
                    .expression_attribute_values(":p", s(prefix))
            };
            let page = q.send().await.map_err(|e| self.err(e))?;
            for item in page.items() {
                if row_meta(item)?.is_none() {
                    continue;
                }
                if let Some(id) = get_s(item, "sid").and_then(|i| SessionId::parse(i).ok()) {
                    out.push(id);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            match page.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok(out),
            }
        }
    }

    /// See `Store::search`: a scan of the logs in scope, newest session
    /// first, until the limit (DynamoDB has no text index).
    pub(super) async fn search_logs(
        &self,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let mut metas = self.all_metas(query.project.as_deref()).await?;
        metas.sort_by(list_order);
        let mut hits = Vec::new();
        for meta in metas {
            let records = match self.read_records(&meta.id, 1, None).await {
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

    fn state_key(ns: &str) -> Item {
        HashMap::from([
            ("pk".to_string(), s(format!("state#{ns}"))),
            ("sk".to_string(), s("state")),
        ])
    }

    /// The namespace's state and version (0: no item).
    async fn state_item(&self, ns: &str) -> Result<(Map<String, Value>, i64), StoreError> {
        let db = self.db().await?;
        let out = db
            .get_item()
            .table_name(self.table())
            .set_key(Some(Self::state_key(ns)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let Some(item) = out.item() else {
            return Ok((Map::new(), 0));
        };
        let map = match get_s(item, "data") {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| corrupt(format!("dynamodb item (state#{ns}, state)"), e))?,
            None => Map::new(),
        };
        Ok((map, get_n(item, "version").unwrap_or(0)))
    }

    /// See `Store::shared_state`.
    pub(super) async fn read_shared_state(
        &self,
        ns: &str,
    ) -> Result<Map<String, Value>, StoreError> {
        Ok(self.state_item(ns).await?.0)
    }

    /// See `Store::update_shared_state`: read, apply, write back on the
    /// condition that the version did not change; a concurrent writer makes
    /// it read again, so no update is lost.
    pub(super) async fn change_shared_state(
        &self,
        ns: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        for attempt in 0..STATE_RETRIES {
            let (mut map, version) = self.state_item(ns).await?;
            delta.apply_to(&mut map);
            let mut item = Self::state_key(ns);
            item.insert("data".into(), s(encode_json(&map)?));
            item.insert("version".into(), n(version + 1));
            let mut e = Expr::default();
            let v = e.name("version");
            let cond = if version == 0 {
                let pk = e.name("pk");
                format!("attribute_not_exists({pk})")
            } else {
                let cur = e.value("v", n(version));
                format!("{v} = {cur}")
            };
            if version == 0 {
                e.names.remove("#version");
            }
            let db = self.db().await?;
            let res = db
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression(cond)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
                .send()
                .await;
            match res {
                Ok(_) => return Ok(map),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    let pause = 5 + fastrand_ms(attempt);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                Err(err) => return Err(self.err(err)),
            }
        }
        Err(StoreError::Backend {
            backend: "dynamodb",
            message: format!(
                "shared state {ns:?} kept changing under {STATE_RETRIES} attempts to update it; retry"
            ),
        })
    }

    /// See `Store::write_events`: a counter on the session row numbers the
    /// events; the ones older than the newest [`EVENTS_CAP`] are deleted.
    pub(super) async fn append_events(
        &self,
        id: &SessionId,
        events: &[Value],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            self.load(id).await?;
            return Ok(());
        }
        let db = self.db().await?;
        let count = events.len() as u64;
        let res = db
            .update_item()
            .table_name(self.table())
            .set_key(Some(self.row_key(id)))
            .update_expression("ADD #ev :n")
            .condition_expression("attribute_exists(#m)")
            .expression_attribute_names("#ev", "events")
            .expression_attribute_names("#m", "meta")
            .expression_attribute_values(":n", n(count))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        let out = match res {
            Ok(o) => o,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                return Err(not_found(id));
            }
            Err(err) => return Err(self.err(err)),
        };
        let last = out
            .attributes()
            .and_then(|a| get_n(a, "events"))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(count);
        let first = last + 1 - count;
        let exp = self.expires_at();
        let mut puts = Vec::new();
        for (k, ev) in (first..=last).zip(events) {
            let mut item = HashMap::from([
                ("pk".to_string(), s(id.as_str())),
                ("sk".to_string(), s(ev_sk(k))),
                ("ev".to_string(), s(encode_json(ev)?)),
            ]);
            if let Some(e) = &exp {
                item.insert("expires_at".into(), e.clone());
            }
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(build_err)?;
            puts.push(WriteRequest::builder().put_request(put).build());
        }
        // Events that fall out of the cap with this write.
        let drop_to = last.saturating_sub(EVENTS_CAP);
        let drop_from = first.saturating_sub(EVENTS_CAP).max(1);
        for k in drop_from..=drop_to {
            let key = HashMap::from([
                ("pk".to_string(), s(id.as_str())),
                ("sk".to_string(), s(ev_sk(k))),
            ]);
            let del = aws_sdk_dynamodb::types::DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(build_err)?;
            puts.push(WriteRequest::builder().delete_request(del).build());
        }
        self.batch_write(puts).await
    }

    /// Writes `requests` 25 at a time, retrying unprocessed ones.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let db = self.db().await?;
        for batch in requests.chunks(25) {
            let mut pending = batch.to_vec();
            for _ in 0..50 {
                let out = db
                    .batch_write_item()
                    .request_items(self.table(), pending)
                    .send()
                    .await
                    .map_err(|e| self.err(e))?;
                pending = out
                    .unprocessed_items()
                    .and_then(|m| m.get(self.table()))
                    .cloned()
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// See `Store::read_events`.
    pub(super) async fn last_events(
        &self,
        id: &SessionId,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
        self.load(id).await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.db().await?;
        let mut out: Vec<Value> = Vec::new();
        let mut start = None;
        loop {
            let page = db
                .query()
                .table_name(self.table())
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :e)")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":pk", s(id.as_str()))
                .expression_attribute_values(":e", s("e#"))
                .consistent_read(true)
                .scan_index_forward(false)
                .limit(i32::try_from((limit - out.len()).min(10_000)).unwrap_or(10_000))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.err(e))?;
            for item in page.items() {
                let json = get_s(item, "ev").unwrap_or("null");
                out.push(
                    serde_json::from_str(json)
                        .map_err(|e| corrupt(format!("dynamodb events of session {id}"), e))?,
                );
            }
            match page.last_evaluated_key() {
                Some(k) if out.len() < limit => start = Some(k.clone()),
                _ => break,
            }
        }
        out.reverse();
        Ok(out)
    }
}

/// A small spread of retry pauses (no RNG dependency needed).
fn fastrand_ms(attempt: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos % 20) + (attempt as u64).min(20)
}
