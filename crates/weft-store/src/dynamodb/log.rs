//! The session log on DynamoDB: `create`, `get`, `append`, `read`, `tail`
//! and `delete`. Appends are one `TransactWriteItems` when the batch fits,
//! else a claimed, chunked write that readers see whole or not at all (see
//! the module docs of `dynamodb`).
//!
//! This module owns the fold of metadata around an append and the row's
//! attributes; it must not know listing, search or turn locks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, TransactWriteItem, Update, WriteRequest,
};
use weft_core::SessionId;
use weft_core::record::{Record, RecordKind, check_batch};
use weft_core::session::{SessionMeta, SessionStatus};
use weft_core::store::{DeleteOptions, StoreError};
use weft_core::view::creation_batch;

use super::{
    CLAIM_LEASE, DynamoStore, ITEM_BYTES, Item, META_SK, TXN_BYTES, TXN_RECORDS, build_err,
    encode_json, get_s, list_key, n, not_found, rec_sk, row_meta, s,
};
use crate::codec;

/// How many times an append whose transaction was cancelled while the head
/// did not move (a transient transaction conflict) is tried again.
const RETRIES: usize = 20;

/// The outcome of a transaction.
pub(super) enum Txn {
    /// Written.
    Done,
    /// Cancelled; the reason codes, one per action (`None` where the
    /// action was fine).
    Cancelled(Vec<Option<String>>),
}

impl Txn {
    /// Whether action `i`'s condition failed.
    pub(super) fn failed_at(&self, i: usize) -> bool {
        matches!(self, Txn::Cancelled(codes) if codes.get(i).and_then(|c| c.as_deref()) == Some("ConditionalCheckFailed"))
    }
}

/// An update expression under construction: `SET #a = :a, …` with its
/// names and values.
#[derive(Default)]
pub(super) struct Expr {
    pub(super) set: Vec<String>,
    pub(super) remove: Vec<String>,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// `SET attr = value`.
    pub(super) fn set(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        let k = self.names.len() + self.values.len();
        self.names.insert(format!("#s{k}"), attr.to_string());
        self.values.insert(format!(":s{k}"), value);
        self.set.push(format!("#s{k} = :s{k}"));
        self
    }

    /// `REMOVE attr`.
    pub(super) fn remove(&mut self, attr: &str) -> &mut Self {
        let k = self.names.len() + self.values.len();
        self.names.insert(format!("#r{k}"), attr.to_string());
        self.remove.push(format!("#r{k}"));
        self
    }

    /// A name placeholder for a condition.
    pub(super) fn name(&mut self, attr: &str) -> String {
        let key = format!("#{attr}");
        self.names.insert(key.clone(), attr.to_string());
        key
    }

    /// A value placeholder for a condition.
    pub(super) fn value(&mut self, key: &str, value: AttributeValue) -> String {
        let key = format!(":{key}");
        self.values.insert(key.clone(), value);
        key
    }

    /// The update expression.
    pub(super) fn update(&self) -> String {
        let mut out = String::new();
        if !self.set.is_empty() {
            out.push_str("SET ");
            out.push_str(&self.set.join(", "));
        }
        if !self.remove.is_empty() {
            out.push_str(" REMOVE ");
            out.push_str(&self.remove.join(", "));
        }
        out
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn status_text(status: SessionStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl DynamoStore {
    /// The attributes of a session row for `meta` (head `meta.last_seq`).
    fn row_values(
        &self,
        meta: &SessionMeta,
    ) -> Result<Vec<(&'static str, AttributeValue)>, StoreError> {
        let mut v = vec![
            ("meta", s(encode_json(meta)?)),
            ("last_seq", n(meta.last_seq)),
            ("status", s(status_text(meta.status))),
            ("project", s(meta.project.slug.clone())),
            ("all", s("ALL")),
            (
                "lkey",
                s(list_key(
                    meta.updated_at.timestamp_micros(),
                    meta.id.as_str(),
                )),
            ),
            ("sid", s(meta.id.as_str())),
        ];
        if let Some(exp) = self.expires_at() {
            v.push(("expires_at", exp));
        }
        Ok(v)
    }

    /// The key of a session's row.
    pub(super) fn row_key(&self, id: &SessionId) -> Item {
        HashMap::from([
            ("pk".to_string(), s(id.as_str())),
            ("sk".to_string(), s(META_SK)),
        ])
    }

    /// One `Put` per record, refusing a record too large for an item.
    fn record_puts(
        &self,
        id: &SessionId,
        records: &[Record],
    ) -> Result<Vec<(Put, usize)>, StoreError> {
        let exp = self.expires_at();
        records
            .iter()
            .map(|r| {
                let line = codec::encode_line(r).map_err(|e| e.into_store("dynamodb", "records"))?;
                let size = line.len() + 64;
                if size > ITEM_BYTES {
                    return Err(StoreError::Invalid(format!(
                        "record {} of session {id} is {} bytes: a DynamoDB item holds at most 400 KB, so the dynamodb store cannot keep it (use the fs, sqlite or postgres store for such records)",
                        r.seq,
                        line.len()
                    )));
                }
                let mut item = HashMap::from([
                    ("pk".to_string(), s(id.as_str())),
                    ("sk".to_string(), s(rec_sk(r.seq))),
                    ("rec".to_string(), s(line)),
                ]);
                if let Some(e) = &exp {
                    item.insert("expires_at".into(), e.clone());
                }
                let put = Put::builder()
                    .table_name(self.table())
                    .set_item(Some(item))
                    .build()
                    .map_err(build_err)?;
                Ok((put, size))
            })
            .collect()
    }

    /// Runs one transaction.
    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Txn, StoreError> {
        let db = self.db().await?;
        match db
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Txn::Done),
            Err(e) => {
                if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error() {
                    return Ok(Txn::Cancelled(
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                            .collect(),
                    ));
                }
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_in_progress_exception())
                {
                    return Ok(Txn::Cancelled(vec![Some("TransactionInProgress".into())]));
                }
                Err(self.err(e))
            }
        }
    }

    /// The session row, strongly consistent (`None`: no such item).
    pub(super) async fn row(&self, id: &SessionId) -> Result<Option<Item>, StoreError> {
        let db = self.db().await?;
        let out = db
            .get_item()
            .table_name(self.table())
            .set_key(Some(self.row_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(out.item().cloned())
    }

    /// The metadata and head, or NotFound.
    pub(super) async fn load(&self, id: &SessionId) -> Result<(SessionMeta, u64), StoreError> {
        match self.row(id).await? {
            Some(item) => row_meta(&item)?.ok_or_else(|| not_found(id)),
            None => Err(not_found(id)),
        }
    }

    /// See `Store::get`.
    pub(super) async fn get_session(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let (mut meta, head) = self.load(id).await?;
        meta.last_seq = head;
        Ok(meta)
    }

    /// See `Store::create`.
    pub(super) async fn create_session(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        let id = meta.id.clone();
        let (records, folded) = creation_batch(&meta, initial)?;
        let puts = self.record_puts(&id, &records)?;
        let chunks = chunk(puts);
        let mut cond = Expr::default();
        let pk = cond.name("pk");
        let exp = cond.name("expires_at");
        let now = cond.value("now", n(chrono::Utc::now().timestamp()));
        let absent = format!("attribute_not_exists({pk}) OR {exp} < {now}");
        if chunks.len() == 1 {
            let mut item = self.row_key(&id);
            for (k, v) in self.row_values(&folded)? {
                item.insert(k.to_string(), v);
            }
            let row = Put::builder()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression(absent)
                .set_expression_attribute_names(Some(cond.names))
                .set_expression_attribute_values(Some(cond.values))
                .build()
                .map_err(build_err)?;
            let mut items = vec![TransactWriteItem::builder().put(row).build()];
            items.extend(
                chunks
                    .into_iter()
                    .flatten()
                    .map(|p| TransactWriteItem::builder().put(p).build()),
            );
            return match self.transact(items).await? {
                Txn::Done => Ok(folded),
                t if t.failed_at(0) => Err(StoreError::AlreadyExists(id.to_string())),
                Txn::Cancelled(codes) => Err(self.cancelled("create", &codes)),
            };
        }
        // Large: an invisible row (no metadata) claimed by us, then chunks.
        let token = uuid::Uuid::new_v4().to_string();
        let mut item = self.row_key(&id);
        item.insert("claim".into(), s(&token));
        item.insert("claim_until".into(), n(now_ms() + claim_ms()));
        item.insert("last_seq".into(), n(0));
        let db = self.db().await?;
        let put = db
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression(absent)
            .set_expression_attribute_names(Some(cond.names))
            .set_expression_attribute_values(Some(cond.values))
            .send()
            .await;
        if let Err(e) = put {
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception())
            {
                return Err(StoreError::AlreadyExists(id.to_string()));
            }
            return Err(self.err(e));
        }
        self.write_claimed(&id, 0, &token, chunks, &folded, None)
            .await?;
        Ok(folded)
    }

    /// See `Store::append`: the metadata at `expected_seq` is folded with
    /// the batch here; the transaction writes both only if the head is
    /// still `expected_seq`.
    pub(super) async fn append_batch(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        let (mut meta, head) = self.load(id).await?;
        check_batch(expected_seq, &records)?;
        let conflict = |actual: u64| StoreError::Conflict {
            id: id.to_string(),
            expected: expected_seq,
            actual,
        };
        let fence = self.fence(id, &records)?;
        if head != expected_seq {
            // A turn that lost its lease is told so, not sent to rebase.
            if let Some(f) = &fence
                && !self.fence_holds(id, f).await?
            {
                return Err(f.lost(id));
            }
            return Err(conflict(head));
        }
        meta.last_seq = head;
        for r in &records {
            meta.apply(r);
        }
        let puts = self.record_puts(id, &records)?;
        let chunks = chunk(puts);
        if chunks.len() > 1 {
            let token = self.claim(id, expected_seq).await?;
            self.write_claimed(id, expected_seq, &token, chunks, &meta, fence.as_ref())
                .await?;
            return Ok(meta);
        }
        let puts: Vec<Put> = chunks.into_iter().flatten().collect();
        for _ in 0..RETRIES {
            let mut e = Expr::default();
            for (k, v) in self.row_values(&meta)? {
                e.set(k, v);
            }
            let ls = e.name("last_seq");
            let expected = e.value("expected", n(expected_seq));
            let row = Update::builder()
                .table_name(self.table())
                .set_key(Some(self.row_key(id)))
                .update_expression(e.update())
                .condition_expression(format!("{ls} = {expected}"))
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .build()
                .map_err(build_err)?;
            let mut items = vec![TransactWriteItem::builder().update(row).build()];
            items.extend(
                puts.iter()
                    .cloned()
                    .map(|p| TransactWriteItem::builder().put(p).build()),
            );
            items.extend(fence.as_ref().map(|f| f.check.clone()));
            match self.transact(items).await? {
                Txn::Done => return Ok(meta),
                Txn::Cancelled(_) => {
                    if let Some(f) = &fence
                        && !self.fence_holds(id, f).await?
                    {
                        return Err(f.lost(id));
                    }
                    let (_, actual) = self.load(id).await?;
                    if actual != expected_seq {
                        return Err(conflict(actual));
                    }
                    // A transient transaction conflict: the head did not move.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Err(self.cancelled("append", &[]))
    }

    /// Claims session `id` at head `expected` for a chunked append,
    /// waiting while another writer's claim is live.
    async fn claim(&self, id: &SessionId, expected: u64) -> Result<String, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let start = Instant::now();
        loop {
            let mut e = Expr::default();
            e.set("claim", s(&token));
            e.set("claim_until", n(now_ms() + claim_ms()));
            let ls = e.name("last_seq");
            let cu = e.name("claim_until");
            let m = e.name("meta");
            let ex = e.value("expected", n(expected));
            let now = e.value("now", n(now_ms()));
            let db = self.db().await?;
            let res = db
                .update_item()
                .table_name(self.table())
                .set_key(Some(self.row_key(id)))
                .update_expression(e.update())
                .condition_expression(format!(
                    "attribute_exists({m}) AND {ls} = {ex} AND (attribute_not_exists({cu}) OR {cu} < {now})"
                ))
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .send()
                .await;
            match res {
                Ok(_) => return Ok(token),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    let (_, actual) = self.load(id).await?;
                    if actual != expected {
                        return Err(StoreError::Conflict {
                            id: id.to_string(),
                            expected,
                            actual,
                        });
                    }
                    if start.elapsed() > CLAIM_LEASE + Duration::from_secs(5) {
                        return Err(self.cancelled("claim", &[]));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(self.err(err)),
            }
        }
    }

    /// Writes `chunks` under our claim `token` at head `expected`; the
    /// last chunk's transaction moves the head and writes `meta`.
    async fn write_claimed(
        &self,
        id: &SessionId,
        expected: u64,
        token: &str,
        chunks: Vec<Vec<Put>>,
        meta: &SessionMeta,
        fence: Option<&super::locks::Fence>,
    ) -> Result<(), StoreError> {
        let count = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut e = Expr::default();
            if i + 1 == count {
                for (k, v) in self.row_values(meta)? {
                    e.set(k, v);
                }
                e.remove("claim");
                e.remove("claim_until");
            } else {
                e.set("claim_until", n(now_ms() + claim_ms()));
            }
            let ls = e.name("last_seq");
            let cl = e.name("claim");
            let ex = e.value("expected", n(expected));
            let tok = e.value("token", s(token));
            let row = Update::builder()
                .table_name(self.table())
                .set_key(Some(self.row_key(id)))
                .update_expression(e.update())
                .condition_expression(format!("{ls} = {ex} AND {cl} = {tok}"))
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .build()
                .map_err(build_err)?;
            let mut items = vec![TransactWriteItem::builder().update(row).build()];
            items.extend(
                chunk
                    .into_iter()
                    .map(|p| TransactWriteItem::builder().put(p).build()),
            );
            items.extend(fence.map(|f| f.check.clone()));
            if let Txn::Cancelled(codes) = self.transact(items).await? {
                self.release_claim(id, token).await;
                if let Some(f) = fence
                    && !self.fence_holds(id, f).await?
                {
                    return Err(f.lost(id));
                }
                return Err(match self.load(id).await {
                    Ok((_, actual)) if actual != expected => StoreError::Conflict {
                        id: id.to_string(),
                        expected,
                        actual,
                    },
                    Err(e) if expected > 0 => e,
                    _ => self.cancelled("chunked write", &codes),
                });
            }
        }
        Ok(())
    }

    /// Drops our claim after a failed chunked write (best effort: it
    /// expires anyway).
    async fn release_claim(&self, id: &SessionId, token: &str) {
        let mut e = Expr::default();
        e.remove("claim");
        e.remove("claim_until");
        let cl = e.name("claim");
        let tok = e.value("token", s(token));
        let Ok(db) = self.db().await else { return };
        let res = db
            .update_item()
            .table_name(self.table())
            .set_key(Some(self.row_key(id)))
            .update_expression(e.update())
            .condition_expression(format!("{cl} = {tok}"))
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .send()
            .await;
        if let Err(err) = res {
            tracing::debug!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), "cannot release a dynamodb append claim; it expires by itself");
        }
    }

    /// The error for a transaction cancelled for another reason than the
    /// conditions the caller handles.
    pub(super) fn cancelled(&self, what: &str, codes: &[Option<String>]) -> StoreError {
        let codes: Vec<&str> = codes.iter().flatten().map(String::as_str).collect();
        StoreError::Backend {
            backend: "dynamodb",
            message: format!(
                "the {what} transaction on table {:?} was cancelled ({}): nothing was written; retry",
                self.table(),
                if codes.is_empty() {
                    "transaction conflicts".to_string()
                } else {
                    codes.join(", ")
                }
            ),
        }
    }

    /// Records `from..=to` of session `id`, forward or backward, at most
    /// `limit` of them.
    pub(super) async fn query_records(
        &self,
        id: &SessionId,
        from: u64,
        to: u64,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        let db = self.db().await?;
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let want = limit.map(|l| l - out.len());
            let mut q = db
                .query()
                .table_name(self.table())
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :a AND :b")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":pk", s(id.as_str()))
                .expression_attribute_values(":a", s(rec_sk(from)))
                .expression_attribute_values(":b", s(rec_sk(to)))
                .consistent_read(true)
                .scan_index_forward(forward)
                .set_exclusive_start_key(start.take());
            if let Some(w) = want {
                q = q.limit(i32::try_from(w.min(10_000)).unwrap_or(10_000));
            }
            let page = q.send().await.map_err(|e| self.err(e))?;
            for item in page.items() {
                let line = get_s(item, "rec").ok_or_else(|| {
                    super::corrupt(
                        format!("dynamodb item ({id}, {})", get_s(item, "sk").unwrap_or("?")),
                        "no rec attribute",
                    )
                })?;
                out.push(
                    codec::decode_str(line)
                        .map_err(|e| e.into_store("dynamodb", &format!("dynamodb session {id}")))?,
                );
            }
            match page.last_evaluated_key() {
                Some(k) if limit.is_none_or(|l| out.len() < l) => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// See `Store::read`.
    pub(super) async fn read_records(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        let (_, head) = self.load(id).await?;
        let from = from_seq.max(1);
        if limit == Some(0) || from > head {
            return Ok(Vec::new());
        }
        let to = match limit {
            Some(l) => head.min(from.saturating_add(l as u64 - 1)),
            None => head,
        };
        self.query_records(id, from, to, true, None).await
    }

    /// See `Store::tail`.
    pub(super) async fn tail_records(
        &self,
        id: &SessionId,
        n: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let (_, head) = self.load(id).await?;
        if n == 0 || head == 0 {
            return Ok(Vec::new());
        }
        let mut out = self.query_records(id, 1, head, false, Some(n)).await?;
        out.reverse();
        Ok(out)
    }

    /// Deletes every item of partition `pk` (25 per request).
    pub(super) async fn delete_partition(&self, pk: &str) -> Result<(), StoreError> {
        let db = self.db().await?;
        let mut start: Option<Item> = None;
        loop {
            let page = db
                .query()
                .table_name(self.table())
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .projection_expression("#pk, #sk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err(e))?;
            let keys: Vec<Item> = page.items().to_vec();
            for batch in keys.chunks(25) {
                let mut requests = batch
                    .iter()
                    .map(|k| {
                        DeleteRequest::builder()
                            .set_key(Some(k.clone()))
                            .build()
                            .map(|d| WriteRequest::builder().delete_request(d).build())
                            .map_err(build_err)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                for _ in 0..50 {
                    let out = db
                        .batch_write_item()
                        .request_items(self.table(), requests)
                        .send()
                        .await
                        .map_err(|e| self.err(e))?;
                    requests = out
                        .unprocessed_items()
                        .and_then(|m| m.get(self.table()))
                        .cloned()
                        .unwrap_or_default();
                    if requests.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            match page.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok(()),
            }
        }
    }

    /// See `Store::delete`. Each session's row goes first (conditioned on
    /// it not being active when asked), then its other items; with
    /// children, descendants are found from every session's metadata.
    pub(super) async fn delete_sessions(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let root = self.get_session(id).await?;
        if options.unless_active && root.status == SessionStatus::Active {
            return Err(refused(id));
        }
        let mut doomed = vec![root.id.clone()];
        if options.with_children {
            let all = self.all_metas(None).await?;
            let mut i = 0;
            while i < doomed.len() {
                let parent = doomed[i].clone();
                for m in &all {
                    if m.parent_id.as_ref() == Some(&parent) && !doomed.contains(&m.id) {
                        doomed.push(m.id.clone());
                    }
                }
                i += 1;
            }
        }
        let mut removed = Vec::new();
        let db = self.db().await?;
        for (i, sid) in doomed.into_iter().enumerate() {
            let mut e = Expr::default();
            let m = e.name("meta");
            let mut cond = format!("attribute_exists({m})");
            if i == 0 && options.unless_active {
                let st = e.name("status");
                let active = e.value("active", s(status_text(SessionStatus::Active)));
                cond = format!("{cond} AND {st} <> {active}");
            }
            let res = db
                .delete_item()
                .table_name(self.table())
                .set_key(Some(self.row_key(&sid)))
                .condition_expression(cond)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
                .send()
                .await;
            match res {
                Ok(_) => {
                    self.delete_partition(sid.as_str()).await?;
                    removed.push(sid);
                }
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    if i == 0 {
                        return Err(match self.load(&sid).await {
                            Ok(_) => refused(&sid),
                            Err(e) => e,
                        });
                    }
                }
                Err(err) => return Err(self.err(err)),
            }
        }
        Ok(removed)
    }
}

fn claim_ms() -> i64 {
    i64::try_from(CLAIM_LEASE.as_millis()).unwrap_or(i64::MAX)
}

/// Splits record puts into transactions' worth: at most [`TXN_RECORDS`]
/// and [`TXN_BYTES`] each.
fn chunk(puts: Vec<(Put, usize)>) -> Vec<Vec<Put>> {
    let mut out: Vec<Vec<Put>> = vec![Vec::new()];
    let mut bytes = 0;
    for (put, size) in puts {
        let full = out
            .last()
            .is_some_and(|c| c.len() >= TXN_RECORDS || (bytes + size > TXN_BYTES && !c.is_empty()));
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(c) = out.last_mut() {
            c.push(put);
        }
    }
    out
}

fn refused(id: &SessionId) -> StoreError {
    StoreError::Refused(format!("session {id} is active: it cannot be removed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn puts(sizes: &[usize]) -> Vec<(Put, usize)> {
        sizes
            .iter()
            .map(|&size| {
                let put = Put::builder()
                    .table_name("t")
                    .set_item(Some(HashMap::new()))
                    .build()
                    .expect("put");
                (put, size)
            })
            .collect()
    }

    #[test]
    fn chunks_respect_the_action_and_byte_limits() {
        let lens = |c: Vec<Vec<Put>>| c.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(lens(chunk(puts(&[10; TXN_RECORDS]))), [TXN_RECORDS]);
        assert_eq!(lens(chunk(puts(&[10; 250]))), [98, 98, 54]);
        assert_eq!(lens(chunk(puts(&[1_000_000; 7]))), [3, 3, 1]);
        assert_eq!(lens(chunk(puts(&[10]))), [1]);
    }
}
