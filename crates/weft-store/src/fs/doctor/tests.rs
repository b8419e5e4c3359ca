//! Unit tests of the fs store's doctor.

use super::*;

#[test]
fn temp_file_names() {
    assert_eq!(temp_pid(".metadata.json.tmp-123"), Some(123));
    assert_eq!(temp_pid(".x.tmp-"), None);
    assert_eq!(temp_pid("metadata.json.tmp-123"), None);
    assert_eq!(temp_pid(".trash-abc"), None);
}

#[test]
fn a_log_is_split_into_records_corruption_and_tail() {
    use crate::conformance::text;
    use weft_core::Role;
    let line = |seq: u64| -> Vec<u8> {
        let records = Record::batch(seq - 1, vec![text(Role::User, "x")]);
        log::encode_batch(&records).expect("encode")
    };
    // A batch of two whose last line never made it: its first line.
    let batch = Record::batch(2, vec![text(Role::User, "a"), text(Role::User, "b")]);
    let encoded = log::encode_batch(&batch).expect("encode");
    let first_of_batch = &encoded[..=encoded.iter().position(|&b| b == b'\n').expect("nl")];
    let mut bytes = line(1);
    let corrupt_at = bytes.len() as u64;
    bytes.extend_from_slice(b"{bad\n");
    bytes.extend_from_slice(&line(2));
    let valid_len = bytes.len() as u64;
    bytes.extend_from_slice(b"not json\n");
    bytes.extend_from_slice(first_of_batch);
    bytes.extend_from_slice(b"{\"v\":1,");
    let parsed = parse_log(&bytes);
    assert_eq!(
        parsed.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(parsed.corrupt, vec![corrupt_at]);
    assert_eq!(parsed.valid_len, valid_len);
    assert_eq!(
        parsed.tail_lines, 2,
        "an unreadable line and an unfinished batch"
    );
    assert_eq!(parsed.file_len - parsed.torn_at, 7);
}
