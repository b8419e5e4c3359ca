//! Backends that keep one record per row (sqlite, postgres, redis): a
//! damaged row fails a whole read instead of leaving a hole in the log.
//! Each backend's tests call [`a_damaged_row_fails_the_read`] with a
//! function that damages the stored row in the backend's own terms.

use std::future::Future;

use weft_core::SessionId;
use weft_core::message::Role;
use weft_core::record::Record;
use weft_core::store::{Store, StoreError};

use super::{new_meta, text};

/// Writes a session of 3,001 records (large enough to be decoded on
/// several threads), lets `damage(id, seq)` replace the stored JSON of
/// record `seq` (1,500) with something that is not a record, then checks
/// that a whole read fails with [`StoreError::Corrupt`] counting one
/// unreadable row and naming `location_part`, and that a read past the
/// damage still works.
pub async fn a_damaged_row_fails_the_read<F, Fut>(store: &dyn Store, location_part: &str, damage: F)
where
    F: FnOnce(SessionId, u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let meta = store
        .create(new_meta("damaged"), Vec::new())
        .await
        .expect("create");
    let texts: Vec<_> = (0..3000)
        .map(|i| text(Role::User, &format!("message {i} {}", "y".repeat(400))))
        .collect();
    store
        .append(&meta.id, 1, Record::batch(1, texts))
        .await
        .expect("append");
    assert_eq!(store.read_all(&meta.id).await.expect("read").len(), 3001);
    damage(meta.id.clone(), 1500).await;
    let err = store.read_all(&meta.id).await.expect_err("refused");
    assert!(
        matches!(&err, StoreError::Corrupt { location, detail }
            if detail.contains("1 of 3001 rows") && location.contains(location_part)),
        "{err}"
    );
    let later = store
        .read(&meta.id, 1501, None)
        .await
        .expect("the rest reads");
    assert_eq!(later.len(), 1501, "seqs 1501 to 3001");
}
