//! [`Store`] for [`PostgresStore`]: the trait bound to the halves in
//! `log`, `query` and `lease`.

use async_trait::async_trait;
use serde_json::{Map, Value};
use weft_core::lease::{TurnHolder, TurnLockAttempt, TurnLockInfo};
use weft_core::record::{Record, RecordKind, StateDelta};
use weft_core::session::SessionMeta;
use weft_core::store::{
    DeleteOptions, HeadGuard, ListQuery, Page, RecordMap, SearchHit, SearchQuery, Store, StoreError,
};
use weft_core::{BranchId, SessionId};

use super::PostgresStore;
use crate::codec;

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn live(&self) -> Option<std::sync::Arc<dyn weft_core::live::LiveChannel>> {
        Some(self.inner.live.clone())
    }

    async fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        self.create_session(meta, initial).await
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        self.get_session(id).await
    }

    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        self.append_batch(id, expected_seq, records).await
    }

    async fn append_guarded(
        &self,
        id: &SessionId,
        guard: &HeadGuard,
        kinds: Vec<RecordKind>,
    ) -> Result<Option<(Vec<Record>, SessionMeta)>, StoreError> {
        self.append_guarded_batch(id, guard, kinds).await
    }

    async fn read(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        self.read_records(id, from_seq, limit, codec::PLAIN).await
    }

    async fn read_mapped(
        &self,
        id: &SessionId,
        from_seq: u64,
        limit: Option<usize>,
        map: RecordMap,
    ) -> Result<Vec<Record>, StoreError> {
        self.read_records(id, from_seq, limit, &*map).await
    }

    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        self.tail_records(id, n).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.list_page(query).await
    }

    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        self.find_session_ids(prefix, limit).await
    }

    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.delete_sessions(id, options).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        self.search_messages(query).await
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        self.read_shared_state(namespace).await
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        self.change_shared_state(namespace, delta).await
    }

    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        self.append_events(id, events).await
    }

    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        self.newest_events(id, limit).await
    }

    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &BranchId,
        holder: &TurnHolder,
    ) -> Result<TurnLockAttempt, StoreError> {
        self.lock_turn_lease(id, branch, holder).await
    }

    async fn turn_locks(&self, id: &SessionId) -> Result<Vec<TurnLockInfo>, StoreError> {
        self.turn_leases(id).await
    }
}
