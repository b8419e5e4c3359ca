//! [`BlockingStore`] for [`FsBackend`]: the operations [`super::FsStore`]
//! runs on the blocking pool (the threading is `crate::blocking`'s), bound
//! to the fs backend's halves in `append`, `read`, `lifecycle` and `state`.

use std::path::PathBuf;

use serde_json::{Map, Value};
use weft_core::lease::{TurnHolder, TurnLockAttempt, TurnLockInfo};
use weft_core::record::{Record, RecordKind, StateDelta};
use weft_core::session::SessionMeta;
use weft_core::store::{DeleteOptions, ListQuery, Page, SearchHit, SearchQuery, StoreError};
use weft_core::{BranchId, MapRecord, SessionId};

use crate::blocking::BlockingStore;

use super::{FsBackend, not_found, recovery};

impl FsBackend {
    /// The directory of session `id`, if it exists.
    pub(super) fn session_dir_of(&self, id: &SessionId) -> Option<PathBuf> {
        self.open_log(id)
            .ok()
            .map(|(slug, _)| self.session_dir(&slug, id.as_str()))
    }

    /// The directory of session `id`, or [`StoreError::NotFound`].
    fn existing_dir(&self, id: &SessionId) -> Result<PathBuf, StoreError> {
        self.session_dir_of(id).ok_or_else(|| not_found(id))
    }
}

impl BlockingStore for FsBackend {
    fn kind(&self) -> &'static str {
        "fs"
    }

    fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        FsBackend::create(self, meta, initial)
    }

    fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        FsBackend::get(self, id)
    }

    fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        FsBackend::append(self, id, expected_seq, records)
    }

    fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: &dyn MapRecord,
    ) -> Result<Vec<Record>, StoreError> {
        FsBackend::read(self, id, from_seq, limit, map)
    }

    fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        FsBackend::tail(self, id, n)
    }

    fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.queue.barrier(false);
        self.index.list(query)
    }

    fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        self.queue.barrier(false);
        self.index.find_ids(prefix, limit)
    }

    fn delete(&self, id: &SessionId, options: DeleteOptions) -> Result<Vec<SessionId>, StoreError> {
        FsBackend::delete(self, id, options)
    }

    fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        FsBackend::search(self, query)
    }

    fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        FsBackend::shared_state(self, namespace)
    }

    fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        FsBackend::update_shared_state(self, namespace, delta)
    }

    fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        FsBackend::write_events(self, id, events)
    }

    fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        FsBackend::read_events(self, id, limit)
    }

    // Turn locks: `turn.<branch>.lock` in the session directory.
    fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        crate::turn_lock::try_lock_turn(&self.existing_dir(id)?, branch, holder)
    }

    fn turn_locks(&self, id: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError> {
        crate::turn_lock::turn_locks(&self.existing_dir(id)?)
    }

    fn quarantined(&self, id: &SessionId) -> Result<Vec<u64>, StoreError> {
        recovery::quarantined_seqs(&self.existing_dir(id)?)
    }
}
