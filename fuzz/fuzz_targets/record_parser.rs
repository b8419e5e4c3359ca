//! libFuzzer target: the session-log record parser and the fold into a
//! `SessionView` (mirrors crates/weft-core/tests/fuzz_record.rs). The input
//! is a log: one record per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::record::Record;
use weft_core::view::SessionView;

fuzz_target!(|data: &[u8]| {
    let mut records = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => {
                // Whatever parses round-trips.
                let text = serde_json::to_string(&record).expect("a parsed record serialises");
                let back: Record = serde_json::from_str(&text).expect("a serialised record parses");
                assert_eq!(back, record);
                records.push(record);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // The fold never panics, by reference or by value, and both agree.
    let by_ref = SessionView::from_records(&records);
    let by_value = SessionView::from_log(records);
    assert_eq!(by_ref, by_value);
});
