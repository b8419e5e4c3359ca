//! The Store conformance suite, instantiated for every backend in this
//! crate (and for weft-core's MemoryStore, the reference).

use std::sync::Arc;

use weft_store::conformance::Harness;

mod memory {
    use super::*;
    use weft_core::memory::MemoryStore;

    weft_store::store_conformance_tests!(Harness::new(Arc::new(MemoryStore::new())));
}

mod fs {
    use super::*;
    use weft_store::FsStore;

    weft_store::store_conformance_tests!({
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStore::open(dir.path()).expect("open fs store");
        Harness::with_guard(Arc::new(store), dir)
    });
}

mod sqlite {
    use super::*;
    use weft_store::SqliteStore;

    weft_store::store_conformance_tests!({
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("weft.sqlite")).expect("open sqlite store");
        Harness::with_guard(Arc::new(store), dir)
    });
}
