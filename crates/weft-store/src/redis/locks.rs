//! Turn locks on Redis: a key per (session, branch) taken with
//! `SET NX PX` (a token, a TTL of `RedisOptions::lease`) that a task renews
//! while the guard lives, plus the holder written in the session's
//! `turns` hash. Dropping the guard releases both (by token, over a short
//! synchronous connection so the release is done when the drop returns); a holder
//! that dies stops renewing, its key expires and the hash still names it:
//! an interrupted turn ([`TurnLockInfo::live`] false) until the next
//! holder takes the lock. See `weft_core::lease` for the contract.
//!
//! The lock fences its turn's appends: the holder in the `turns` hash
//! names the turn, and the append script writes a batch naming a turn only
//! while the branch's lock key exists and the hash names that turn.
//!
//! This module must not know the log, listing or search.

use std::time::Duration;

use weft_core::lease::{TurnHolder, TurnLock, TurnLockAttempt, TurnLockInfo};
use weft_core::store::StoreError;
use weft_core::{BranchId, SessionId};

use super::{RedisStore, encode_json, not_found, scripts};

/// How long dropping a guard may wait for its release.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Holds a turn lock: renews it in the background; releases it on drop.
struct RedisTurnGuard {
    client: redis::Client,
    lock_key: String,
    turns_key: String,
    token: String,
    branch: String,
    holder: String,
    renew: tokio::task::JoinHandle<()>,
}

impl RedisTurnGuard {
    /// Releases the lock over a short synchronous connection, so the
    /// release has happened when the guard is gone (a task spawned here
    /// could be cancelled by a runtime shutting down, leaving the lock to
    /// read as interrupted). It costs one round trip once per turn.
    fn release(&self) -> redis::RedisResult<()> {
        let mut conn = self.client.get_connection_with_timeout(RELEASE_TIMEOUT)?;
        conn.set_read_timeout(Some(RELEASE_TIMEOUT))?;
        conn.set_write_timeout(Some(RELEASE_TIMEOUT))?;
        let _: i64 = scripts::RELEASE
            .key(&self.lock_key)
            .key(&self.turns_key)
            .arg(&self.token)
            .arg(&self.branch)
            .arg(&self.holder)
            .invoke(&mut conn)?;
        Ok(())
    }
}

impl Drop for RedisTurnGuard {
    fn drop(&mut self) {
        self.renew.abort();
        if let Err(e) = self.release() {
            // The key expires after its TTL; the turn then reads as
            // interrupted, which the next runner repairs.
            tracing::warn!(error = %e, "cannot release a redis turn lock; it expires by itself");
        }
    }
}

impl RedisStore {
    /// See `Store::try_lock_turn`.
    pub(super) async fn lock_turn_once(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let holder_json = encode_json(holder)?;
        let lease = self.options.lease;
        let ttl_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let lock_key = self.keys.turn(id, branch);
        let turns_key = self.keys.turns(id);
        let mut conn = self.conn().await?;
        let reply: Vec<redis::Value> = scripts::LOCK
            .key(self.keys.meta(id))
            .key(&lock_key)
            .key(&turns_key)
            .arg(&token)
            .arg(ttl_ms)
            .arg(branch.as_str())
            .arg(&holder_json)
            .arg(self.ttl_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        let code: i64 = match reply.first() {
            Some(v) => redis::from_redis_value_ref(v).map_err(|e| reply_err(&e))?,
            None => return Err(self.unexpected("lock", &[])),
        };
        match code {
            0 => Err(not_found(id)),
            1 => {
                let renew = {
                    let mut conn = conn.clone();
                    let (key, token) = (lock_key.clone(), token.clone());
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(lease / 3).await;
                            let kept: Result<i64, _> = scripts::RENEW
                                .key(&key)
                                .arg(&token)
                                .arg(ttl_ms)
                                .invoke_async(&mut conn)
                                .await;
                            match kept {
                                Ok(1) => {}
                                Ok(_) => {
                                    tracing::warn!(
                                        "a redis turn lock expired before it was renewed"
                                    );
                                    return;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot renew a redis turn lock")
                                }
                            }
                        }
                    })
                };
                Ok(TurnLockAttempt::Acquired(TurnLock::new(
                    holder.clone(),
                    RedisTurnGuard {
                        client: self.client.clone(),
                        lock_key,
                        turns_key,
                        token,
                        branch: branch.to_string(),
                        holder: holder_json,
                        renew,
                    },
                )))
            }
            _ => {
                let who: Option<String> = match reply.get(1) {
                    Some(v) => redis::from_redis_value_ref(v).map_err(|e| reply_err(&e))?,
                    None => None,
                };
                Ok(TurnLockAttempt::Busy(
                    who.and_then(|j| serde_json::from_str(&j).ok()),
                ))
            }
        }
    }

    /// See `Store::turn_locks`.
    pub(super) async fn list_turn_locks(
        &self,
        id: &SessionId,
    ) -> Result<Vec<TurnLockInfo>, StoreError> {
        self.get_session(id).await?;
        let mut conn = self.conn().await?;
        let holders: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys.turns(id))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (branch, holder) in holders {
            let Ok(branch) = BranchId::parse(&branch) else {
                continue;
            };
            let live: bool = redis::cmd("EXISTS")
                .arg(self.keys.turn(id, &branch))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            out.push(TurnLockInfo {
                branch,
                holder: serde_json::from_str(&holder).ok(),
                live,
            });
        }
        out.sort_by(|a, b| a.branch.as_str().cmp(b.branch.as_str()));
        Ok(out)
    }
}

fn reply_err(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: "redis",
        message: format!("unexpected reply from the lock script: {e}"),
    }
}
