//! Appends decided at the log's head: [`append_at_head`] (decided on the
//! metadata found there) and [`append_guarded_after_get`], the default
//! [`Store::append_guarded`] (written there when the session passes a
//! [`HeadGuard`]). They know the store only through the [`Store`] trait.

use super::{Store, StoreError, UPDATE_ATTEMPTS};
use crate::id::{BranchId, SessionId};
use crate::record::{Record, RecordKind};
use crate::session::{SessionMeta, SessionStatus};

/// What [`Store::append_guarded`] requires of the session at the head its
/// batch follows: everything the batch was decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadGuard {
    /// The status the session must have there.
    pub status: SessionStatus,
    /// The default branch it must have there.
    pub default_branch: BranchId,
}

impl HeadGuard {
    /// Whether `session` passes.
    pub fn holds(&self, session: &SessionMeta) -> bool {
        session.status == self.status && session.default_branch == self.default_branch
    }
}

/// Appends the records `decide` gives for the session as it is at its
/// head, deciding again against the new head when another writer appended
/// first (at most [`UPDATE_ATTEMPTS`] times). No records: nothing is
/// written and the session is returned as read. For writes decided on the
/// metadata alone; a writer that keeps its own view of the session uses
/// [`crate::log::append_checked`], which also hands `decide` the records
/// the others appended.
pub async fn append_at_head<S, F>(
    store: &S,
    id: &SessionId,
    mut decide: F,
) -> Result<SessionMeta, StoreError>
where
    S: Store + ?Sized,
    F: FnMut(&SessionMeta) -> Result<Vec<RecordKind>, StoreError> + Send,
{
    let mut attempt = 0;
    loop {
        let session = store.get(id).await?;
        let kinds = decide(&session)?;
        if kinds.is_empty() {
            return Ok(session);
        }
        let head = session.last_seq;
        match store.append(id, head, Record::batch(head, kinds)).await {
            Err(e) if e.is_conflict() && attempt < UPDATE_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// The default [`Store::append_guarded`], for backends that override it
/// only for some batches: the head read ([`Store::get`]), the guard
/// checked there, the batch appended after it (again from a new read after
/// a conflict, at most [`UPDATE_ATTEMPTS`] times). No records: nothing is
/// written and the session is returned as read.
pub async fn append_guarded_after_get<S>(
    store: &S,
    id: &SessionId,
    guard: &HeadGuard,
    kinds: Vec<RecordKind>,
) -> Result<Option<(Vec<Record>, SessionMeta)>, StoreError>
where
    S: Store + ?Sized,
{
    let mut attempt = 0;
    loop {
        let session = store.get(id).await?;
        if !guard.holds(&session) {
            return Ok(None);
        }
        if kinds.is_empty() {
            return Ok(Some((Vec::new(), session)));
        }
        let head = session.last_seq;
        let batch = Record::batch(head, kinds.iter().cloned());
        match store.append(id, head, batch.clone()).await {
            Ok(meta) => return Ok(Some((batch, meta))),
            Err(e) if e.is_conflict() && attempt < UPDATE_ATTEMPTS => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::message::{Message, Role};
    use crate::session::Project;

    #[tokio::test]
    async fn a_guarded_append_lands_at_the_head_only_when_the_guard_holds() {
        let store = MemoryStore::new();
        let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let id = meta.id.clone();
        store.create(meta, Vec::new()).await.unwrap();
        let message = || {
            vec![RecordKind::message(Message::text(
                BranchId::main(),
                Role::User,
                "hello",
            ))]
        };
        let active = HeadGuard {
            status: SessionStatus::Active,
            default_branch: BranchId::main(),
        };
        // Created, not active: refused, nothing written.
        assert!(
            store
                .append_guarded(&id, &active, message())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.get(&id).await.unwrap().last_seq, 1);
        store
            .transition(&id, SessionStatus::Active, None, None)
            .await
            .unwrap();
        let (records, meta) = store
            .append_guarded(&id, &active, message())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
        assert_eq!((meta.last_seq, meta.message_count), (3, 1));
        assert_eq!(store.read(&id, 3, None).await.unwrap(), records);
        let elsewhere = HeadGuard {
            default_branch: BranchId::parse("side").unwrap(),
            ..active
        };
        assert!(
            store
                .append_guarded(&id, &elsewhere, message())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.get(&id).await.unwrap().last_seq, 3);
    }
}
