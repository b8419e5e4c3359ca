//! libFuzzer target: the Amplifier importer into an fs store (mirrors
//! crates/weft-store/tests/fuzz_import.rs). The input's first line is the
//! session's `metadata.json`, the rest its `transcript.jsonl`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_store::FsStore;
use weft_store::import::import_amplifier;

fuzz_target!(|data: &[u8]| {
    let (meta, transcript) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let top = tempfile::tempdir().expect("tempdir");
    let session = top.path().join("amp/projects/-p/sessions/s1");
    std::fs::create_dir_all(&session).expect("session directory");
    std::fs::write(session.join("metadata.json"), meta).expect("metadata.json");
    std::fs::write(session.join("transcript.jsonl"), transcript).expect("transcript.jsonl");
    let home = top.path().join("home");
    let store = FsStore::open(&home).expect("open the store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let report = rt
        .block_on(import_amplifier(&top.path().join("amp"), &store))
        .expect("an Amplifier directory");
    assert_eq!(
        report.imported.len() + report.skipped.len() + report.failed.len(),
        1
    );
    // Nothing is written beside the store and the source.
    let mut names: Vec<_> = std::fs::read_dir(top.path())
        .expect("read the top directory")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["amp", "home"]);
});
