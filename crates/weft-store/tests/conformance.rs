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

/// The encryption layer over memory and fs: the same contract holds with
/// every record sealed.
mod encrypted {
    use super::*;
    use weft_store::encryption::{self, MasterKey};

    fn key() -> Option<MasterKey> {
        let text = MasterKey::generate_base64().expect("a random key");
        Some(MasterKey::from_base64(&text).expect("a valid key"))
    }

    mod memory {
        use super::*;
        use weft_core::memory::MemoryStore;

        weft_store::store_conformance_tests!(Harness::new(encryption::wrap(
            Arc::new(MemoryStore::new()),
            key()
        )));
    }

    mod fs {
        use super::*;
        use weft_store::FsStore;

        weft_store::store_conformance_tests!({
            let dir = tempfile::tempdir().expect("tempdir");
            let store = FsStore::open(dir.path()).expect("open fs store");
            Harness::with_guard(encryption::wrap(Arc::new(store), key()), dir)
        });
    }
}
