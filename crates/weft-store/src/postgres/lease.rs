//! Turn locks for [`PostgresStore`]: leases in `turn_locks`.
//!
//! A lock is a row (session, branch) naming its holder, with a fencing
//! token (from the `turn_lock_tokens` sequence) and an expiry. Taking it
//! inserts the row, or takes over a row whose lease has expired; while the
//! guard lives a task renews the lease every third of [`TURN_LEASE`];
//! dropping the guard deletes the row (when it still carries our token). A
//! holder that dies stops renewing: its row stays, expired, and is reported
//! as not live (an interrupted turn) until the next holder takes it.
//!
//! The lease fences the turn's appends: the holder JSON names the turn
//! (`TurnHolder::turn`), and the append statement (`log`) writes a batch
//! naming a turn only while that turn's row is unexpired (see
//! `weft_core::lease`). The lease lasts [`TURN_LEASE`] unless the URL says
//! otherwise (`?lease_ms=`, see `url_options`).

use weft_core::lease::{TurnHolder, TurnLock, TurnLockAttempt, TurnLockInfo};
use weft_core::store::StoreError;
use weft_core::{BranchId, SessionId};

use super::{PostgresStore, corrupt, db, encode};

/// Takes the lease of branch `$2` of session `$1` for holder `$3` for `$4`
/// ms: inserts the row, or takes over an expired one. Returns whether the
/// session exists and the new fencing token (NULL: the lease is held).
///
/// Committed without waiting for its WAL flush (`synchronous_commit` off
/// for this transaction only): every append the lease fences is durable
/// and comes later in the WAL, so flushing it flushes the lease; a lease
/// lost with a crash of the server only makes its holder's appends fail
/// ([`StoreError::LeaseLost`]), never lets two holders write. The lease's
/// renewals are committed the same way; its release is durable (a release
/// lost with a crash would leave a finished turn looking interrupted).
const ACQUIRE_SQL: &str = "WITH s AS (SELECT 1 FROM sessions WHERE id = $1),
ins AS (
    INSERT INTO turn_locks (session_id, branch, holder, token, expires_at)
    SELECT $1, $2, $3, nextval('turn_lock_tokens'),
        now() + $4::float8 * interval '1 millisecond'
    WHERE EXISTS (SELECT 1 FROM s)
    ON CONFLICT (session_id, branch) DO UPDATE
      SET holder = EXCLUDED.holder, token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
      WHERE turn_locks.expires_at <= now()
    RETURNING token
)
SELECT EXISTS (SELECT 1 FROM s), (SELECT token FROM ins),
    set_config('synchronous_commit', 'off', true)";

/// Extends the lease `$3` of branch `$2` of session `$1` by `$4` ms from
/// now (committed as [`ACQUIRE_SQL`] is).
const RENEW_SQL: &str = "WITH u AS (
    UPDATE turn_locks SET expires_at = now() + $4::float8 * interval '1 millisecond'
    WHERE session_id = $1 AND branch = $2 AND token = $3
    RETURNING 1
)
SELECT (SELECT count(*) FROM u), set_config('synchronous_commit', 'off', true)";

/// Deletes the lease `$3` of branch `$2` of session `$1` (durably).
const RELEASE_SQL: &str =
    "DELETE FROM turn_locks WHERE session_id = $1 AND branch = $2 AND token = $3";

impl PostgresStore {
    fn lease_ms(&self) -> f64 {
        self.inner.lease.as_millis() as f64
    }
}

/// Holds a lease; renews it while alive, deletes it when dropped.
struct LeaseGuard {
    store: PostgresStore,
    session: String,
    branch: String,
    token: i64,
    renew: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    async fn release(store: PostgresStore, session: String, branch: String, token: i64) {
        let result = async {
            let conn = store.conn().await?;
            let stmt = conn.prepare_cached(RELEASE_SQL).await.map_err(db)?;
            conn.execute(&stmt, &[&session, &branch, &token])
                .await
                .map_err(db)
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(session, branch, error = %e, "cannot release a turn lock; it expires by itself");
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
            self.token,
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

async fn renew_loop(store: PostgresStore, session: String, branch: String, token: i64) {
    let period = store.inner.lease / 3;
    loop {
        tokio::time::sleep(period).await;
        let result = async {
            let conn = store.conn().await?;
            let stmt = conn.prepare_cached(RENEW_SQL).await.map_err(db)?;
            conn.query_one(&stmt, &[&session, &branch, &token, &store.lease_ms()])
                .await
                .map(|row| row.get::<_, i64>(0))
                .map_err(db)
        }
        .await;
        match result {
            Ok(0) => {
                tracing::warn!(session, branch, "lost a turn lock's lease");
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(session, branch, error = %e, "cannot renew a turn lock"),
        }
    }
}

impl PostgresStore {
    pub(super) async fn lock_turn_lease(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        let conn = self.conn().await?;
        let who = encode(holder)?;
        let stmt = conn.prepare_cached(ACQUIRE_SQL).await.map_err(db)?;
        let row = conn
            .query_one(
                &stmt,
                &[&id.as_str(), &branch.as_str(), &who, &self.lease_ms()],
            )
            .await
            .map_err(db)?;
        if !row.get::<_, bool>(0) {
            return Err(super::not_found(id));
        }
        let Some(token) = row.get::<_, Option<i64>>(1) else {
            let current = conn
                .query_opt(
                    "SELECT holder FROM turn_locks WHERE session_id = $1 AND branch = $2",
                    &[&id.as_str(), &branch.as_str()],
                )
                .await
                .map_err(db)?;
            let holder = current.and_then(|r| serde_json::from_str(r.get(0)).ok());
            return Ok(TurnLockAttempt::Busy(holder));
        };
        let renew = tokio::spawn(renew_loop(
            self.clone(),
            id.to_string(),
            branch.to_string(),
            token,
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

    pub(super) async fn turn_leases(
        &self,
        id: &SessionId,
    ) -> Result<Vec<TurnLockInfo>, StoreError> {
        let conn = self.conn().await?;
        Self::check_exists(&conn, id).await?;
        let rows = conn
            .query(
                "SELECT branch, holder, expires_at > now() FROM turn_locks
                 WHERE session_id = $1 ORDER BY branch",
                &[&id.as_str()],
            )
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let Ok(branch) = BranchId::parse(row.get::<_, &str>(0)) else {
                continue;
            };
            let holder: TurnHolder = serde_json::from_str(row.get(1))
                .map_err(|e| corrupt(format!("turn_locks ({id}, {branch})"), e))?;
            out.push(TurnLockInfo {
                branch,
                holder: Some(holder),
                live: row.get(2),
            });
        }
        Ok(out)
    }
}
