//! The one bridge from synchronous backends to the async [`Store`] trait.
//!
//! The fs and sqlite backends do blocking work (file I/O, fsync, SQLite
//! calls). They implement [`BlockingStore`], a synchronous mirror of
//! [`Store`]'s primitive operations, and [`Blocking`] turns any such backend
//! into a [`Store`]: every call moves its arguments onto tokio's blocking
//! pool, runs there, and comes back. A call that panics (or whose task is
//! cancelled because the runtime shuts down) comes back as a
//! [`BlockingError`], turned into [`StoreError::Backend`] naming the backend
//! and the operation — never an abort, never a hung caller.
//!
//! This module owns the threading and the join-error handling, and nothing
//! else. It knows no backend, no file, no SQL, and no record format; the
//! provided operations of [`Store`] (`lock_turn`, `fork`, `cleanup`, …) keep
//! their definitions in `weft_core::store`.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use weft_core::lease::{TurnHolder, TurnLockAttempt, TurnLockInfo};
use weft_core::record::{Record, RecordKind, StateDelta};
use weft_core::session::SessionMeta;
use weft_core::store::{
    DeleteOptions, ListQuery, Page, RecordMap, SearchHit, SearchQuery, Store, StoreError,
};
use weft_core::{BranchId, MapRecord, SessionId};

use crate::codec;

/// A store backend whose operations block the calling thread.
///
/// Each method is the synchronous form of the [`Store`] method of the same
/// name, with the same contract; [`Blocking`] runs them off the async
/// runtime.
pub trait BlockingStore: Send + Sync + 'static {
    /// The backend's name (`fs`, `sqlite`, …): [`Store::kind`], and the
    /// `backend` of the errors [`Blocking`] reports.
    fn kind(&self) -> &'static str;

    /// [`Store::create`].
    fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError>;

    /// [`Store::get`].
    fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError>;

    /// [`Store::append`].
    fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError>;

    /// [`Store::read_mapped`]: [`Store::read`] with `map` applied to each
    /// record as it is decoded (`Store::read` passes a map that changes
    /// nothing).
    fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: &dyn MapRecord,
    ) -> Result<Vec<Record>, StoreError>;

    /// [`Store::tail`].
    fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError>;

    /// [`Store::list`].
    fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// [`Store::find_ids`].
    fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError>;

    /// [`Store::delete`].
    fn delete(&self, id: &SessionId, options: DeleteOptions) -> Result<Vec<SessionId>, StoreError>;

    /// [`Store::search`].
    fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError>;

    /// [`Store::shared_state`].
    fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError>;

    /// [`Store::update_shared_state`].
    fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError>;

    /// [`Store::write_events`].
    fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError>;

    /// [`Store::read_events`].
    fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError>;

    /// [`Store::try_lock_turn`].
    fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError>;

    /// [`Store::turn_locks`].
    fn turn_locks(&self, id: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError>;

    /// [`Store::quarantined`]. The default, for backends that cannot damage
    /// a committed record: none (after checking that the session exists).
    fn quarantined(&self, id: &SessionId) -> Result<Vec<u64>, StoreError> {
        self.get(id)?;
        Ok(Vec::new())
    }
}

/// Why a call [`Blocking`] moved to the blocking pool returned no result.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    /// The backend panicked during the call.
    #[error(
        "the {operation} call panicked ({message}); this is a bug in weft, please report it — the operation may or may not have taken effect, so reload before retrying"
    )]
    Panicked {
        /// The backend (`fs`, `sqlite`, …).
        backend: &'static str,
        /// The [`Store`] operation (`append`, `list`, …).
        operation: &'static str,
        /// The panic's message, when it had one.
        message: String,
    },
    /// The task was cancelled before it finished (the runtime is shutting
    /// down).
    #[error("the {operation} call was cancelled: the async runtime is shutting down")]
    Cancelled {
        /// The backend.
        backend: &'static str,
        /// The [`Store`] operation.
        operation: &'static str,
    },
}

impl BlockingError {
    /// The backend the failed call went to.
    pub fn backend(&self) -> &'static str {
        match self {
            BlockingError::Panicked { backend, .. } | BlockingError::Cancelled { backend, .. } => {
                backend
            }
        }
    }

    fn from_join(
        backend: &'static str,
        operation: &'static str,
        e: tokio::task::JoinError,
    ) -> Self {
        match e.try_into_panic() {
            Ok(payload) => BlockingError::Panicked {
                backend,
                operation,
                message: panic_message(payload.as_ref()),
            },
            Err(_) => BlockingError::Cancelled { backend, operation },
        }
    }
}

impl From<BlockingError> for StoreError {
    fn from(e: BlockingError) -> Self {
        StoreError::Backend {
            backend: e.backend(),
            message: e.to_string(),
        }
    }
}

/// The text of a panic payload (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_string()
    }
}

/// A [`BlockingStore`] as an async [`Store`]: each call runs on tokio's
/// blocking pool. Cloning is cheap and shares the backend.
pub struct Blocking<B> {
    backend: Arc<B>,
}

impl<B> Blocking<B> {
    /// Wraps `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            backend: Arc::new(backend),
        }
    }

    /// The synchronous backend (its calls block the current thread).
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B> Clone for Blocking<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for Blocking<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.backend.fmt(f)
    }
}

impl<B: BlockingStore> Blocking<B> {
    /// Runs `f(backend)` on the blocking pool; `operation` names the call in
    /// the error when it panics or is cancelled.
    async fn run<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&B) -> Result<T, StoreError> + Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || f(&backend))
            .await
            .map_err(|e| BlockingError::from_join(self.backend.kind(), operation, e))?
    }
}

#[async_trait]
impl<B: BlockingStore> Store for Blocking<B> {
    fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    async fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        self.run("create", move |b| b.create(meta, initial)).await
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        self.run("get", move |b| b.get(&id)).await
    }

    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        self.run("append", move |b| b.append(&id, expected_seq, records))
            .await
    }

    async fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        self.run("read", move |b| b.read(&id, from_seq, limit, codec::PLAIN))
            .await
    }

    async fn read_mapped(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: RecordMap,
    ) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        self.run("read", move |b| b.read(&id, from_seq, limit, &*map))
            .await
    }

    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        self.run("tail", move |b| b.tail(&id, n)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let query = query.clone();
        self.run("list", move |b| b.list(&query)).await
    }

    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        let prefix = prefix.to_string();
        self.run("find_ids", move |b| b.find_ids(&prefix, limit))
            .await
    }

    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let id = id.clone();
        self.run("delete", move |b| b.delete(&id, options)).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let query = query.clone();
        self.run("search", move |b| b.search(&query)).await
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        self.run("shared_state", move |b| b.shared_state(&namespace))
            .await
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        let delta = delta.clone();
        self.run("update_shared_state", move |b| {
            b.update_shared_state(&namespace, &delta)
        })
        .await
    }

    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        let id = id.clone();
        let events = events.to_vec();
        self.run("write_events", move |b| b.write_events(&id, &events))
            .await
    }

    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        let id = id.clone();
        self.run("read_events", move |b| b.read_events(&id, limit))
            .await
    }

    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        let (id, branch, holder) = (id.clone(), branch.clone(), holder.clone());
        self.run("try_lock_turn", move |b| {
            b.try_lock_turn(&id, &branch, &holder)
        })
        .await
    }

    async fn turn_locks(&self, id: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError> {
        let id = id.clone();
        self.run("turn_locks", move |b| b.turn_locks(&id)).await
    }

    async fn quarantined(&self, id: &SessionId) -> Result<Vec<u64>, StoreError> {
        let id = id.clone();
        self.run("quarantined", move |b| b.quarantined(&id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::lease::TurnLock;
    use weft_core::session::Project;

    /// A backend whose `get` panics for one id and whose other calls
    /// answer plainly, to watch what [`Blocking`] makes of each.
    struct Fake {
        panics_on: SessionId,
    }

    fn unused() -> StoreError {
        StoreError::Invalid("not used by these tests".into())
    }

    fn meta(id: &SessionId) -> SessionMeta {
        SessionMeta::new(
            id.clone(),
            Project::from_dir(std::path::Path::new("/p")),
            "dev",
        )
    }

    impl BlockingStore for Fake {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn create(&self, meta: SessionMeta, _: Vec<RecordKind>) -> Result<SessionMeta, StoreError> {
            Ok(meta)
        }
        fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
            if *id == self.panics_on {
                panic!("boom in get");
            }
            Ok(meta(id))
        }
        fn append(&self, _: &SessionId, _: u64, _: Vec<Record>) -> Result<SessionMeta, StoreError> {
            std::panic::panic_any(42u8)
        }
        fn read(
            &self,
            _: &SessionId,
            _: u64,
            _: Option<usize>,
            _: &dyn MapRecord,
        ) -> Result<Vec<Record>, StoreError> {
            Err(unused())
        }
        fn tail(&self, _: &SessionId, _: usize) -> Result<Vec<Record>, StoreError> {
            Err(unused())
        }
        fn list(&self, _: &ListQuery) -> Result<Page, StoreError> {
            Err(unused())
        }
        fn find_ids(&self, _: &str, _: usize) -> Result<Vec<SessionId>, StoreError> {
            Err(unused())
        }
        fn delete(&self, _: &SessionId, _: DeleteOptions) -> Result<Vec<SessionId>, StoreError> {
            Err(unused())
        }
        fn search(&self, _: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
            Err(unused())
        }
        fn shared_state(&self, _: &str) -> Result<Map<String, Value>, StoreError> {
            Err(unused())
        }
        fn update_shared_state(
            &self,
            _: &str,
            _: &StateDelta,
        ) -> Result<Map<String, Value>, StoreError> {
            Err(unused())
        }
        fn write_events(&self, _: &SessionId, _: &[Value]) -> Result<(), StoreError> {
            Err(unused())
        }
        fn read_events(&self, _: &SessionId, _: usize) -> Result<Vec<Value>, StoreError> {
            Err(unused())
        }
        fn try_lock_turn(
            &self,
            _: &SessionId,
            _: &BranchId,
            holder: &TurnHolder,
        ) -> Result<TurnLockAttempt, StoreError> {
            Ok(TurnLockAttempt::Acquired(TurnLock::new(holder.clone(), ())))
        }
        fn turn_locks(&self, _: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn store() -> (Blocking<Fake>, SessionId) {
        let bad = SessionId::new_v7();
        let store = Blocking::new(Fake {
            panics_on: bad.clone(),
        });
        (store, bad)
    }

    #[tokio::test]
    async fn a_panic_becomes_a_backend_error_naming_the_call() {
        let (store, bad) = store();
        let err = store.get(&bad).await.expect_err("the backend panicked");
        let StoreError::Backend { backend, message } = &err else {
            panic!("expected a backend error, got {err:?}");
        };
        assert_eq!(*backend, "fake");
        assert!(
            message.contains("get call panicked (boom in get)"),
            "{message}"
        );
        // A payload that is not a string still gives an error.
        let err = store
            .append(&bad, 0, Vec::new())
            .await
            .expect_err("append panicked");
        assert!(
            err.to_string()
                .contains("append call panicked (no message)"),
            "{err}"
        );
        // The store keeps working after a panic.
        let ok = SessionId::new_v7();
        assert_eq!(store.get(&ok).await.expect("get").id, ok);
    }

    #[tokio::test]
    async fn calls_and_provided_methods_reach_the_backend() {
        let (store, bad) = store();
        assert_eq!(store.kind(), "fake");
        let ok = SessionId::new_v7();
        assert_eq!(
            store
                .create(meta(&ok), Vec::new())
                .await
                .expect("create")
                .id,
            ok
        );
        assert!(matches!(
            store.read(&ok, 1, None).await,
            Err(StoreError::Invalid(_))
        ));
        // The default `quarantined` checks the session through `get`.
        assert!(
            store
                .quarantined(&ok)
                .await
                .expect("quarantined")
                .is_empty()
        );
        assert!(store.quarantined(&bad).await.is_err());
        // `lock_turn` (provided by `Store`) goes through `try_lock_turn`.
        let holder = TurnHolder::current();
        let lock = store
            .lock_turn(&ok, &BranchId::main(), &holder, &|_| {})
            .await
            .expect("lock");
        assert_eq!(lock.holder(), &holder);
        // Clones share the backend.
        assert_eq!(store.clone().backend().panics_on, bad);
    }
}
