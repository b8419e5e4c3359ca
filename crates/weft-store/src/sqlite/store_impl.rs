//! The async [`Store`] impl for [`SqliteStore`]: each call moves its
//! arguments onto tokio's blocking pool and runs the matching `Inner`
//! operation (listing and prefix lookups go through `crate::sql`).

use super::*;

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn create(
        &self,
        meta: SessionMeta,
        initial: Vec<RecordKind>,
    ) -> Result<SessionMeta, StoreError> {
        blocking("sqlite", &self.inner, move |i| i.create(meta, initial)).await
    }

    async fn get(&self, id: &SessionId) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| i.get(&id)).await
    }

    async fn append(
        &self,
        id: &SessionId,
        expected_seq: u64,
        records: Vec<Record>,
    ) -> Result<SessionMeta, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| {
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
        blocking("sqlite", &self.inner, move |i| i.read(&id, from_seq, limit)).await
    }

    async fn tail(&self, id: &SessionId, n: usize) -> Result<Vec<Record>, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| i.tail(&id, n)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let query = query.clone();
        blocking("sqlite", &self.inner, move |i| {
            crate::sql::list_page(&lock(&i.reader), "sessions", "1 = 1", &query).map_err(db)
        })
        .await
    }

    async fn find_ids(&self, prefix: &str, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        let prefix = prefix.to_string();
        blocking("sqlite", &self.inner, move |i| {
            crate::sql::find_ids(&lock(&i.reader), "sessions", "1 = 1", &prefix, limit).map_err(db)
        })
        .await
    }

    async fn delete(
        &self,
        id: &SessionId,
        options: DeleteOptions,
    ) -> Result<Vec<SessionId>, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| i.delete(&id, options)).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let query = query.clone();
        blocking("sqlite", &self.inner, move |i| i.search(&query)).await
    }

    async fn shared_state(&self, namespace: &str) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        blocking("sqlite", &self.inner, move |i| {
            Inner::shared_state(&lock(&i.reader), &namespace)
        })
        .await
    }

    async fn update_shared_state(
        &self,
        namespace: &str,
        delta: &StateDelta,
    ) -> Result<Map<String, Value>, StoreError> {
        let namespace = namespace.to_string();
        let delta = delta.clone();
        blocking("sqlite", &self.inner, move |i| {
            i.update_shared_state(&namespace, &delta)
        })
        .await
    }

    async fn write_events(&self, id: &SessionId, events: &[Value]) -> Result<(), StoreError> {
        let id = id.clone();
        let events = events.to_vec();
        blocking("sqlite", &self.inner, move |i| i.write_events(&id, &events)).await
    }

    async fn read_events(&self, id: &SessionId, limit: usize) -> Result<Vec<Value>, StoreError> {
        let id = id.clone();
        blocking("sqlite", &self.inner, move |i| i.read_events(&id, limit)).await
    }

    // Turn locks: `<db>.locks/<session>/turn.<branch>.lock`.
    async fn try_lock_turn(
        &self,
        id: &SessionId,
        branch: &weft_core::BranchId,
        holder: &weft_core::lease::TurnHolder,
    ) -> Result<weft_core::lease::TurnLockAttempt, StoreError> {
        self.get(id).await?;
        let dir = crate::turn_lock::sibling_dir(self.path(), id);
        std::fs::create_dir_all(&dir).map_err(|e| crate::util::io_err(&dir, e))?;
        crate::turn_lock::try_lock_turn(&dir, branch, holder)
    }

    async fn turn_locks(
        &self,
        id: &SessionId,
    ) -> Result<Vec<weft_core::lease::TurnLockInfo>, StoreError> {
        self.get(id).await?;
        crate::turn_lock::turn_locks(&crate::turn_lock::sibling_dir(self.path(), id))
    }
}
