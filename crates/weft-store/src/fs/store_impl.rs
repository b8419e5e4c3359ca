//! The async [`Store`] trait implemented for [`FsStore`] over the sync `Inner`.

use async_trait::async_trait;
use serde_json::{Map, Value};
use weft_core::SessionId;
use weft_core::record::{Record, RecordKind, StateDelta};
use weft_core::session::SessionMeta;
use weft_core::store::{DeleteOptions, ListQuery, Page, SearchHit, SearchQuery, Store, StoreError};

use crate::util::blocking;

use super::{FsStore, recovery};

#[async_trait]
impl Store for FsStore {
    fn kind(&self) -> &'static str {
        "fs"
    }

    async fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        blocking("fs", &self.inner, move |i| i.create(meta, initial)).await
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.get(&id)).await
    }

    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| {
            i.append(&id, expected_seq, records)
        })
        .await
    }

    async fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.read(&id, from_seq, limit)).await
    }

    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.tail(&id, n)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let query = query.clone();
        blocking("fs", &self.inner, move |i| {
            i.queue.barrier();
            i.index.list(&query)
        })
        .await
    }

    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        let prefix = prefix.to_string();
        blocking("fs", &self.inner, move |i| {
            i.queue.barrier();
            i.index.find_ids(&prefix, limit)
        })
        .await
    }

    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.delete(&id, options)).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let query = query.clone();
        blocking("fs", &self.inner, move |i| i.search(&query)).await
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        blocking("fs", &self.inner, move |i| i.shared_state(&namespace)).await
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        let delta = delta.clone();
        blocking("fs", &self.inner, move |i| {
            i.update_shared_state(&namespace, &delta)
        })
        .await
    }

    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        let id = id.clone();
        let events = events.to_vec();
        blocking("fs", &self.inner, move |i| i.write_events(&id, &events)).await
    }

    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        let id = id.clone();
        blocking("fs", &self.inner, move |i| i.read_events(&id, limit)).await
    }
    // Turn locks: `turn.<branch>.lock` in the session directory.
    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &weft_core::BranchId,
        holder: &weft_core::lease::TurnHolder,
    ) -> Result<weft_core::lease::TurnLockAttempt, StoreError> {
        let dir = self
            .session_dir(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        crate::turn_lock::try_lock_turn(&dir, branch, holder)
    }

    async fn turn_locks(
        &self,
        id: &SessionId,
    ) -> Result<Vec<weft_core::lease::TurnLockInfo>, StoreError> {
        let dir = self
            .session_dir(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        crate::turn_lock::turn_locks(&dir)
    }

    async fn quarantined(&self, id: &SessionId) -> Result<Vec<u64>, StoreError> {
        let dir = self
            .session_dir(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        recovery::quarantined_seqs(&dir)
    }
}
