//! End to end: the real `weft` binary over a damaged or edited fs store
//! (a stray file under `projects/`, `weft doctor` and `--fix`, a damaged
//! last record), for what the CLI prints and its exit codes. What the
//! store does with a log that shrank under its index is tested by
//! weft-store's `tests/doctor.rs`. The helpers are in `support/mod.rs`.

mod support;

use serde_json::Value;
use support::*;

/// Finding 7 of issue 9: a stray file under `projects/` made every command
/// fail with "Not a directory".
#[test]
fn a_stray_file_under_projects_does_not_stop_session_list() {
    let env = Env::new();
    env.run_hi();
    std::fs::write(env.home.path().join("projects").join("README"), "notes").unwrap();
    let out = env.weft(&["session", "list", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        stderr.matches("stray entry").count(),
        1,
        "warned once: {stderr}"
    );
}

/// A damaged last record is read by every step of a command (the head,
/// the metadata, the transcript): it is reported once, not at each read.
#[test]
fn a_damaged_last_record_is_reported_once_per_command() {
    let env = Env::new();
    env.run_hi();
    let log = walk(env.home.path())
        .into_iter()
        .find(|p| p.ends_with("log.jsonl"))
        .expect("a session log");
    let text = std::fs::read_to_string(&log).unwrap();
    let body = text.strip_suffix('\n').expect("whole lines");
    let last = body.rfind('\n').map_or(0, |i| i + 1);
    let damaged = format!(
        "{}{}\n",
        &body[..last],
        body[last..].replacen("\"seq\"", "\"seX\"", 1)
    );
    std::fs::write(&log, damaged).unwrap();
    let id = log
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .expect("the session's directory")
        .to_string();
    let out = env.weft(&["session", "show", &id, "--transcript"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("complete but unreadable").count(),
        1,
        "warned once: {stderr}"
    );
}

#[test]
fn doctor_checks_then_fixes_a_damaged_home() {
    let env = Env::new();
    env.run_hi();
    let healthy = env.ok(&["doctor"]);
    assert!(healthy.contains("no problems"), "{healthy}");

    let log = walk(env.home.path())
        .into_iter()
        .find(|p| p.ends_with("log.jsonl"))
        .unwrap();
    let dir = log.parent().unwrap().to_path_buf();
    let records = std::fs::read_to_string(&log).unwrap().lines().count();
    // A torn write, a lost metadata.json, a temp file of a dead process.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(br#"{"v":1,"seq":99,"ts":"#);
    std::fs::write(&log, bytes).unwrap();
    std::fs::remove_file(dir.join("metadata.json")).unwrap();
    std::fs::write(dir.join(".metadata.json.tmp-4000000000"), "{").unwrap();

    let out = env.weft(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "problems found: exit 1");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("problem: ").count(), 3, "{text}");
    assert!(text.contains("torn write"), "{text}");
    assert!(
        text.contains("repairable with `weft doctor --fix`"),
        "{text}"
    );
    let report: Value = serde_json::from_slice(&env.weft(&["doctor", "--json"]).stdout).unwrap();
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"torn_tail") && kinds.contains(&"metadata") && kinds.contains(&"temp_file"),
        "{report}"
    );

    let fixed = env.ok(&["doctor", "--fix"]);
    assert_eq!(fixed.matches("fixed: ").count(), 3, "{fixed}");
    assert!(env.ok(&["doctor"]).contains("no problems"));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        records,
        "no record lost"
    );
    assert!(dir.join("metadata.json").is_file());
    assert!(!dir.join(".metadata.json.tmp-4000000000").exists());

    // A store doctor cannot check is one clear sentence and exit 2.
    let out = env.weft(&["--store", "memory", "doctor"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing for doctor to check"));
}

/// Finding 8 of issue 9 (the report's D3): a damaged but complete last
/// record is not a torn write. It is reported on read, kept in
/// `log.quarantine.jsonl` by the next append (never truncated away), its
/// seq is never reused, and `session show` says so.
#[test]
fn a_damaged_last_record_is_quarantined_and_shown() {
    let env = Env::new();
    let id = env.first_session();
    let log = walk(env.home.path())
        .into_iter()
        .find(|p| p.ends_with("log.jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let (rest, last) = text.trim_end_matches('\n').rsplit_once('\n').unwrap();
    let last_seq: Value = serde_json::from_str(last).unwrap();
    let last_seq = last_seq["seq"].as_u64().unwrap();
    let damaged = last.replacen("\"seq\"", "\"seX\"", 1);
    std::fs::write(&log, format!("{rest}\n{damaged}\n")).unwrap();

    let script = env.script("two.json", SCRIPT);
    env.ok(&[
        "run",
        "--resume",
        &id,
        "--script",
        script.to_str().unwrap(),
        "two",
    ]);
    let quarantine = log.with_file_name("log.quarantine.jsonl");
    let kept = std::fs::read_to_string(&quarantine).expect("the damaged record is kept");
    assert!(kept.contains("seX"), "{kept}");
    let seqs: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        !seqs.contains(&last_seq),
        "seq {last_seq} not reused: {seqs:?}"
    );
    assert!(seqs.iter().any(|&s| s > last_seq), "{seqs:?}");

    let shown = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(
        shown["quarantined"],
        serde_json::json!([last_seq]),
        "{shown}"
    );
    let plain = env.ok(&["session", "show", &id]);
    assert!(plain.contains("log.quarantine.jsonl"), "{plain}");
}
