//! Turn locks: one runner per (session, branch), across processes.
//!
//! A turn appends after records other writers made unless they conflict
//! with it; another turn on the same branch always would. So before a turn
//! reads its branch's history it takes the branch's **turn lock** through
//! the [`Store`](crate::store::Store) (`try_lock_turn` / `lock_turn`) and
//! holds it, as a [`TurnLock`] guard, until the turn has recorded its last
//! message. The lock says who holds it ([`TurnHolder`]: process, host,
//! since when), so a second runner can say what it waits for.
//!
//! Backends implement it with what dies with the holder:
//! - memory: an in-process table ([`LocalTurnLocks`]);
//! - fs and sqlite (one machine): an OS advisory lock (`flock`) on a lock
//!   file, with the holder written into it and cleared on release — a
//!   file that still names a holder while nobody holds its lock is a turn
//!   whose process exited mid-turn ([`TurnLockInfo::live`] false: an
//!   *interrupted* turn);
//! - network stores (postgres, redis): a lease with a TTL that the holder
//!   renews and a fencing token; a lease that expires is an interrupted
//!   turn the next runner repairs.
//!
//! # Fencing
//!
//! Every record a turn appends (its status change to active, the repair of
//! an interrupted turn's tool calls, its messages, a cancelled turn's last
//! records) is appended while the turn holds its lock, and carries the
//! turn's id and branch (`Record::turn`, `Record::branch`). The runtime
//! names the turn in the lock's holder ([`TurnHolder::turn`]). A lease
//! backend checks, atomically with the append, that a batch naming turn T
//! on branch B is appended while the lease of (session, B) is held,
//! unexpired, by T; otherwise the append fails with
//! [`StoreError::LeaseLost`](crate::store::StoreError::LeaseLost) and
//! writes nothing: a node that stopped renewing (paused, partitioned) and
//! whose lease another node took over cannot append behind its back.
//! Batches that name no turn (renames, state, the daemon's routes) are not
//! fenced. Memory, fs and sqlite need no fencing: their lock dies with the
//! process that holds it, so a holder that still runs still holds it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{BranchId, SessionId, TurnId};

/// How long `lock_turn` sleeps between attempts while it waits.
pub const TURN_LOCK_POLL: Duration = Duration::from_millis(50);

/// Who holds (or asks for) a turn lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnHolder {
    /// The process id.
    pub pid: u32,
    /// The host name.
    pub host: String,
    /// When the lock was taken.
    pub started_at: DateTime<Utc>,
    /// The turn the lock is taken for, when it is a turn's (the runtime
    /// sets it): lease backends fence that turn's appends with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnId>,
}

impl TurnHolder {
    /// This process, now.
    pub fn current() -> Self {
        Self {
            pid: std::process::id(),
            host: host_name(),
            started_at: Utc::now(),
            turn: None,
        }
    }

    /// This holder, taking the lock for turn `turn`.
    pub fn for_turn(mut self, turn: &TurnId) -> Self {
        self.turn = Some(turn.clone());
        self
    }

    /// "process 123 on host h (since 12:00:01 UTC)".
    pub fn describe(&self) -> String {
        format!(
            "process {} on {} (since {})",
            self.pid,
            self.host,
            self.started_at.format("%H:%M:%S UTC")
        )
    }
}

/// This machine's host name (`localhost` when it cannot be read), read
/// once per process: every turn's holder names it, and reading
/// `/proc/sys/kernel/hostname` each time cost five system calls a turn.
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into())
    })
    .clone()
}

/// A held turn lock; dropping it releases the lock.
pub struct TurnLock {
    holder: TurnHolder,
    _guard: Box<dyn Send + Sync>,
}

impl TurnLock {
    /// A lock held by `holder`, released when `guard` is dropped.
    pub fn new(holder: TurnHolder, guard: impl Send + Sync + 'static) -> Self {
        Self {
            holder,
            _guard: Box::new(guard),
        }
    }

    /// Who holds it.
    pub fn holder(&self) -> &TurnHolder {
        &self.holder
    }
}

impl std::fmt::Debug for TurnLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnLock")
            .field("holder", &self.holder)
            .finish()
    }
}

/// The outcome of `try_lock_turn`.
#[derive(Debug)]
pub enum TurnLockAttempt {
    /// The lock is ours until the guard is dropped.
    Acquired(TurnLock),
    /// Someone else holds it (who, when the backend knows).
    Busy(Option<TurnHolder>),
}

/// A turn lock recorded for a session (see `Store::turn_locks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnLockInfo {
    /// The branch.
    pub branch: BranchId,
    /// Who holds it, or held it last without releasing it.
    pub holder: Option<TurnHolder>,
    /// Whether the holder still holds it; false means its process exited
    /// mid-turn (an interrupted turn).
    pub live: bool,
}

/// The message shown while a turn waits for another one on its branch.
pub fn waiting_message(branch: &BranchId, holder: Option<&TurnHolder>) -> String {
    match holder {
        Some(h) => format!(
            "waiting for the turn running in process {} on branch {branch} ({} since {})…",
            h.pid,
            h.host,
            h.started_at.format("%H:%M:%S UTC")
        ),
        None => format!("waiting for the turn running in another process on branch {branch}…"),
    }
}

/// The error when a turn does not wait for another one on its branch.
pub fn busy_message(id: &SessionId, branch: &BranchId, holder: Option<&TurnHolder>) -> String {
    let who = holder.map_or_else(|| "another process".to_string(), TurnHolder::describe);
    format!(
        "branch {branch} of session {id} is running a turn in {who}: wait for it to finish (run again without --no-wait to wait), or use another branch"
    )
}

type LockKey = (SessionId, BranchId);

/// An in-process turn-lock table (the memory store's implementation, and
/// a building block for others).
#[derive(Default, Clone)]
pub struct LocalTurnLocks {
    held: Arc<Mutex<HashMap<LockKey, TurnHolder>>>,
}

struct LocalGuard {
    held: Arc<Mutex<HashMap<LockKey, TurnHolder>>>,
    key: LockKey,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        lock_map(&self.held).remove(&self.key);
    }
}

fn lock_map<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalTurnLocks {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the lock of (`id`, `branch`) if it is free.
    pub fn try_lock(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> TurnLockAttempt {
        let key = (id.clone(), branch.clone());
        let mut held = lock_map(&self.held);
        if let Some(h) = held.get(&key) {
            return TurnLockAttempt::Busy(Some(h.clone()));
        }
        held.insert(key.clone(), holder.clone());
        TurnLockAttempt::Acquired(TurnLock::new(
            holder.clone(),
            LocalGuard {
                held: self.held.clone(),
                key,
            },
        ))
    }

    /// The locks held on session `id` (all live).
    pub fn held(&self, id: &SessionId) -> Vec<TurnLockInfo> {
        lock_map(&self.held)
            .iter()
            .filter(|((s, _), _)| s == id)
            .map(|((_, b), h)| TurnLockInfo {
                branch: b.clone(),
                holder: Some(h.clone()),
                live: true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_names_its_turn_only_when_it_has_one() {
        let plain = TurnHolder::current();
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("turn").is_none(), "{json}");
        // A holder written before holders named turns still reads.
        let old: TurnHolder = serde_json::from_value(
            serde_json::json!({"pid": 1, "host": "h", "started_at": "2026-01-01T00:00:00Z"}),
        )
        .unwrap();
        assert_eq!(old.turn, None);
        let turn = TurnId::new_v7();
        let holder = TurnHolder::current().for_turn(&turn);
        let back: TurnHolder =
            serde_json::from_value(serde_json::to_value(&holder).unwrap()).unwrap();
        assert_eq!(back.turn, Some(turn));
    }

    #[test]
    fn a_local_lock_is_exclusive_and_released_on_drop() {
        let locks = LocalTurnLocks::new();
        let id = SessionId::parse("s1").unwrap();
        let main = BranchId::main();
        let me = TurnHolder::current();
        let TurnLockAttempt::Acquired(guard) = locks.try_lock(&id, &main, &me) else {
            panic!("a free lock must be acquired");
        };
        match locks.try_lock(&id, &main, &me) {
            TurnLockAttempt::Busy(Some(h)) => assert_eq!(h.pid, std::process::id()),
            other => panic!("expected busy, got {other:?}"),
        }
        let other = BranchId::parse("other").unwrap();
        assert!(matches!(
            locks.try_lock(&id, &other, &me),
            TurnLockAttempt::Acquired(_)
        ));
        assert_eq!(locks.held(&id).len(), 1);
        drop(guard);
        assert!(locks.held(&id).is_empty());
        assert!(matches!(
            locks.try_lock(&id, &main, &me),
            TurnLockAttempt::Acquired(_)
        ));
    }
}
