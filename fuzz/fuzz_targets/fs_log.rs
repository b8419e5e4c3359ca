//! libFuzzer target: the fs store's log reader (mirrors
//! crates/weft-store/tests/fuzz_log.rs). A session is created, its
//! `log.jsonl` replaced by the input after the first line, and a fresh
//! store reads it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::store::{ListQuery, Store};
use weft_store::FsStore;
use weft_store::conformance::new_meta;
use weft_store::fs::LOG_FILE;

fuzz_target!(|data: &[u8]| {
    let top = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let meta = new_meta("fuzz");
    let id = meta.id.clone();
    let log = {
        let store = FsStore::open(top.path()).expect("open");
        rt.block_on(store.create(meta, Vec::new())).expect("create");
        store
            .session_dir(&id)
            .expect("session directory")
            .join(LOG_FILE)
    };
    let mut file = std::fs::read(&log).expect("read the log");
    file.extend_from_slice(data);
    std::fs::write(&log, file).expect("write the log");
    let store = FsStore::open(top.path()).expect("reopen");
    rt.block_on(async {
        let head = store.get(&id).await.map(|m| m.last_seq).unwrap_or(0);
        let _ = store.read_all(&id).await;
        let _ = store.read(&id, head / 2 + 1, Some(5)).await;
        let _ = store.tail(&id, 3).await;
        let _ = store.view(&id).await;
        let _ = store.list(&ListQuery::default()).await;
    });
});
