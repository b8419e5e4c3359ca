//! Turn locks on DynamoDB: a lease item per (session, branch) —
//! `lock#<branch>` in the session's partition — naming its holder, with a
//! token and `lease_until`. Taking it is a conditional put (`no item, or
//! its lease expired`); while the guard lives a task renews the lease
//! every third of [`TURN_LOCK_TTL`] (conditioned on our token); dropping
//! the guard deletes the item (conditioned on our token). A holder that
//! dies stops renewing: its item stays, expired, and is reported as not
//! live (an interrupted turn) until the next holder takes it over. See
//! `weft_core::lease` for the contract.
//!
//! This module must not know the log, listing or search.

use std::collections::HashMap;

use weft_core::lease::{TurnHolder, TurnLock, TurnLockAttempt, TurnLockInfo};
use weft_core::store::StoreError;
use weft_core::{BranchId, SessionId};

use super::{DynamoStore, Item, TURN_LOCK_TTL, encode_json, get_n, get_s, n, s};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn lease_ms() -> i64 {
    i64::try_from(TURN_LOCK_TTL.as_millis()).unwrap_or(i64::MAX)
}

fn lock_key(id: &str, branch: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), s(id)),
        ("sk".to_string(), s(format!("lock#{branch}"))),
    ])
}

/// Holds a lease; renews it while alive, deletes it when dropped.
struct LeaseGuard {
    store: DynamoStore,
    session: String,
    branch: String,
    token: String,
    renew: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    async fn release(store: DynamoStore, session: String, branch: String, token: String) {
        let res = store
            .client()
            .delete_item()
            .table_name(store.table())
            .set_key(Some(lock_key(&session, &branch)))
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":t", s(token))
            .send()
            .await;
        if let Err(e) = res
            && !e
                .as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception())
        {
            tracing::warn!(session, branch, error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "cannot release a dynamodb turn lock; it expires by itself");
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renew.abort();
        let release = Self::release(
            self.store.clone(),
            std::mem::take(&mut self.session),
            std::mem::take(&mut self.branch),
            std::mem::take(&mut self.token),
        );
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime: the lease expires by itself.
            return;
        };
        // Released before `drop` returns when the runtime allows blocking
        // (so the next `try_lock_turn` finds the lock free); otherwise in
        // the background.
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(|| handle.block_on(release));
        } else {
            handle.spawn(release);
        }
    }
}

async fn renew_loop(store: DynamoStore, session: String, branch: String, token: String) {
    loop {
        tokio::time::sleep(TURN_LOCK_TTL / 3).await;
        let res = store
            .client()
            .update_item()
            .table_name(store.table())
            .set_key(Some(lock_key(&session, &branch)))
            .update_expression("SET #lu = :lu")
            .condition_expression("#t = :t")
            .expression_attribute_names("#lu", "lease_until")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":lu", n(now_ms() + lease_ms()))
            .expression_attribute_values(":t", s(&token))
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                tracing::warn!(session, branch, "lost a dynamodb turn lock's lease");
                return;
            }
            Err(e) => {
                tracing::warn!(session, branch, error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "cannot renew a dynamodb turn lock")
            }
        }
    }
}

impl DynamoStore {
    /// See `Store::try_lock_turn`.
    pub(super) async fn lock_turn_lease(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        self.load(id).await?;
        let token = uuid::Uuid::new_v4().to_string();
        let mut item = lock_key(id.as_str(), branch.as_str());
        item.insert("holder".into(), s(encode_json(holder)?));
        if let Some(turn) = &holder.turn {
            // What appends of that turn are fenced by (see `fence`).
            item.insert("turn".into(), s(turn.as_str()));
        }
        item.insert("token".into(), s(&token));
        item.insert("lease_until".into(), n(now_ms() + lease_ms()));
        if let Some(exp) = self.expires_at() {
            item.insert("expires_at".into(), exp);
        }
        let db = self.db().await?;
        let res = db
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #lu < :now")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#lu", "lease_until")
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                let cur = db
                    .get_item()
                    .table_name(self.table())
                    .set_key(Some(lock_key(id.as_str(), branch.as_str())))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| self.err(e))?;
                let who = cur
                    .item()
                    .and_then(|i| get_s(i, "holder"))
                    .and_then(|j| serde_json::from_str(j).ok());
                return Ok(TurnLockAttempt::Busy(who));
            }
            Err(e) => return Err(self.err(e)),
        }
        let renew = tokio::spawn(renew_loop(
            self.clone(),
            id.to_string(),
            branch.to_string(),
            token.clone(),
        ));
        Ok(TurnLockAttempt::Acquired(TurnLock::new(
            holder.clone(),
            LeaseGuard {
                store: self.clone(),
                session: id.to_string(),
                branch: branch.to_string(),
                token,
                renew,
            },
        )))
    }

    /// See `Store::turn_locks`.
    pub(super) async fn turn_leases(
        &self,
        id: &SessionId,
    ) -> Result<Vec<TurnLockInfo>, StoreError> {
        self.load(id).await?;
        let db = self.db().await?;
        let page = db
            .query()
            .table_name(self.table())
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :l)")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_values(":pk", s(id.as_str()))
            .expression_attribute_values(":l", s("lock#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let now = now_ms();
        let mut out = Vec::new();
        for item in page.items() {
            let Some(branch) = get_s(item, "sk")
                .and_then(|sk| sk.strip_prefix("lock#"))
                .and_then(|b| BranchId::parse(b).ok())
            else {
                continue;
            };
            out.push(TurnLockInfo {
                branch,
                holder: get_s(item, "holder").and_then(|j| serde_json::from_str(j).ok()),
                live: get_n(item, "lease_until").is_some_and(|t| t > now),
            });
        }
        out.sort_by(|a, b| a.branch.as_str().cmp(b.branch.as_str()));
        Ok(out)
    }
}

/// The fencing of one append: a turn's batch is written only while that
/// turn holds its branch's lease (see `Store::try_lock_turn`).
pub(super) struct Fence {
    /// The condition check to add to the append's transaction.
    pub(super) check: aws_sdk_dynamodb::types::TransactWriteItem,
    turn: weft_core::TurnId,
    branch: BranchId,
}

impl Fence {
    /// The error for an append refused by the fence.
    pub(super) fn lost(&self, id: &SessionId) -> StoreError {
        StoreError::LeaseLost {
            id: id.to_string(),
            branch: self.branch.to_string(),
            turn: self.turn.to_string(),
        }
    }
}

impl DynamoStore {
    /// The fence of a batch naming a turn (None for other batches: they
    /// are not fenced).
    pub(super) fn fence(
        &self,
        id: &SessionId,
        records: &[weft_core::record::Record],
    ) -> Result<Option<Fence>, StoreError> {
        let Some((turn, branch)) = weft_core::record::Record::batch_turn(records) else {
            return Ok(None);
        };
        let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(self.table())
            .set_key(Some(lock_key(id.as_str(), branch.as_str())))
            .condition_expression("#turn = :turn AND #lu > :now")
            .expression_attribute_names("#turn", "turn")
            .expression_attribute_names("#lu", "lease_until")
            .expression_attribute_values(":turn", s(turn.as_str()))
            .expression_attribute_values(":now", n(now_ms()))
            .build()
            .map_err(super::build_err)?;
        Ok(Some(Fence {
            check: aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .condition_check(check)
                .build(),
            turn: turn.clone(),
            branch: branch.clone(),
        }))
    }

    /// Whether `fence`'s turn still holds its lease (read now).
    pub(super) async fn fence_holds(
        &self,
        id: &SessionId,
        fence: &Fence,
    ) -> Result<bool, StoreError> {
        let db = self.db().await?;
        let item = db
            .get_item()
            .table_name(self.table())
            .set_key(Some(lock_key(id.as_str(), fence.branch.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(item.item().is_some_and(|i| {
            get_s(i, "turn") == Some(fence.turn.as_str())
                && i.get("lease_until")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|until| until > now_ms())
        }))
    }
}
