//! [`BlockingStore`] for [`SqliteBackend`]: the operations
//! [`super::SqliteStore`] runs on the blocking pool (the threading is
//! `crate::blocking`'s), bound to the halves in `log` and `query`; listing
//! and prefix lookups go through `crate::sql`.

use weft_core::lease::{TurnHolder, TurnLockAttempt, TurnLockInfo};
use weft_core::{BranchId, MapRecord};

use crate::blocking::BlockingStore;

use super::*;

impl SqliteBackend {
    /// The turn-lock directory of session `id` (`<db>.locks/<session>/`),
    /// or [`StoreError::NotFound`] when the session does not exist.
    fn lock_dir(&self, id: &SessionId) -> Result<PathBuf, StoreError> {
        SqliteBackend::get(self, id)?;
        Ok(crate::turn_lock::sibling_dir(&self.path, id))
    }
}

impl BlockingStore for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        SqliteBackend::create(self, meta, initial)
    }

    fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        SqliteBackend::get(self, id)
    }

    fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        SqliteBackend::append(self, id, expected_seq, records)
    }

    fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: &dyn MapRecord,
    ) -> Result<Vec<Record>, StoreError> {
        SqliteBackend::read(self, id, from_seq, limit, map)
    }

    fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        SqliteBackend::tail(self, id, n)
    }

    fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        crate::sql::list_page(&lock(&self.reader), "sessions", "1 = 1", query).map_err(db)
    }

    fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        crate::sql::find_ids(&lock(&self.reader), "sessions", "1 = 1", prefix, limit).map_err(db)
    }

    fn delete(&self, id: &SessionId, options: DeleteOptions) -> Result<Vec<SessionId>, StoreError> {
        SqliteBackend::delete(self, id, options)
    }

    fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        SqliteBackend::search(self, query)
    }

    fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        SqliteBackend::read_shared_state(&lock(&self.reader), namespace)
    }

    fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        SqliteBackend::update_shared_state(self, namespace, delta)
    }

    fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        SqliteBackend::write_events(self, id, events)
    }

    fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        SqliteBackend::read_events(self, id, limit)
    }

    // Turn locks: `<db>.locks/<session>/turn.<branch>.lock`.
    fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        let dir = self.lock_dir(id)?;
        std::fs::create_dir_all(&dir).map_err(|e| crate::util::io_err(&dir, e))?;
        crate::turn_lock::try_lock_turn(&dir, branch, holder)
    }

    fn turn_locks(&self, id: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError> {
        crate::turn_lock::turn_locks(&self.lock_dir(id)?)
    }
}
