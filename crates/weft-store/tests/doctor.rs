//! A weft home that is not quite as weft left it: stray files under
//! `projects/` (finding 7 of issue 9), a log that shrank behind its index
//! row (finding 11), and `weft doctor`'s checks and repairs
//! (`weft_store::fs::doctor`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use weft_core::store::{ListQuery, Store, StoreError};
use weft_core::testing::CountingProgress;
use weft_core::{Role, SessionId};
use weft_store::conformance::{new_meta, push, text};
use weft_store::fs::doctor::{self, FindingKind, QUARANTINE_FILE, Report, Severity};
use weft_store::fs::{LOG_FILE, META_FILE, TRANSCRIPT_FILE};
use weft_store::{FsStore, SqliteStore};

async fn session(store: &FsStore, n: usize) -> (SessionId, PathBuf) {
    let meta = new_meta("doctor-tests");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    for i in 0..n {
        push(store, &id, vec![text(Role::User, &format!("message {i}"))]).await;
    }
    let dir = store.session_dir(&id).expect("dir");
    (id, dir)
}

fn kinds(report: &Report) -> Vec<FindingKind> {
    report.findings.iter().map(|f| f.kind).collect()
}

/// The complete lines of a file.
fn line_count(path: &Path) -> usize {
    fs::read(path)
        .map(|b| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count())
        .unwrap_or(0)
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open")
        .write_all(bytes)
        .expect("write");
}

#[tokio::test]
async fn a_stray_file_under_projects_is_skipped() {
    let home = tempfile::tempdir().expect("tempdir");
    let (id, dir) = {
        let store = FsStore::open(home.path()).expect("open");
        session(&store, 1).await
    };
    let projects = home.path().join("projects");
    fs::write(projects.join("README"), "notes").expect("write");
    // A project directory whose sessions/ is a file, and a stray file among
    // session directories.
    fs::create_dir_all(projects.join("other")).expect("mkdir");
    fs::write(projects.join("other").join("sessions"), "").expect("write");
    let sessions = dir.parent().expect("sessions dir");
    fs::write(sessions.join("notes.txt"), "").expect("write");

    let store = FsStore::open(home.path()).expect("a stray file does not stop the store");
    let page = store.list(&ListQuery::default()).await.expect("list");
    assert_eq!(page.sessions.len(), 1);
    assert_eq!(page.sessions[0].id, id);
    store.rebuild_index().expect("a full rescan skips them too");
    assert_eq!(store.indexed_sessions().expect("count"), 1);
    // A lookup that scans every project directory skips them as well.
    let missing = SessionId::new_v7();
    assert!(matches!(
        store.get(&missing).await,
        Err(StoreError::NotFound(_))
    ));

    let report = doctor::check(home.path()).expect("check");
    assert!(report.healthy(), "{report:?}");
    let mut strays: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Stray)
        .map(|f| f.path.clone())
        .collect();
    strays.sort();
    assert_eq!(
        strays,
        vec![
            sessions.join("notes.txt"),
            projects.join("README"),
            projects.join("other").join("sessions"),
        ]
    );
}

/// The report's D17: a log cut in half (as by restoring an older copy)
/// while its index row keeps the old head.
#[tokio::test]
async fn the_index_follows_a_log_that_shrank() {
    let home = tempfile::tempdir().expect("tempdir");
    let (id, dir) = {
        let store = FsStore::open(home.path()).expect("open");
        session(&store, 12).await
    };
    let log = dir.join(LOG_FILE);
    let bytes = fs::read(&log).expect("read");
    fs::write(&log, &bytes[..bytes.len() / 2]).expect("write half");

    let report = doctor::check(home.path()).expect("check");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::IndexStaleRow
                && f.message.contains("the index row says")),
        "{report:?}"
    );

    let store = FsStore::open(home.path()).expect("open");
    let head = store.get(&id).await.expect("get").last_seq;
    assert!(head < 13, "the log really shrank (head {head})");
    // The next append corrects the row, although it is behind it.
    let after = push(&store, &id, vec![text(Role::User, "after")]).await;
    assert_eq!(after.last_seq, head + 1);
    let page = store.list(&ListQuery::default()).await.expect("list");
    assert_eq!(page.sessions[0].last_seq, after.last_seq);
    assert_eq!(page.sessions[0].message_count, after.message_count);
    drop(store);
    let report = doctor::check(home.path()).expect("check");
    assert!(report.healthy(), "the append left no problem: {report:?}");

    // And a reconcile writes what the log says, smaller or not.
    fs::write(&log, &bytes[..bytes.len() / 3]).expect("write a third");
    let store = FsStore::open(home.path()).expect("open");
    store.rebuild_index().expect("rebuild");
    let head = store.get(&id).await.expect("get").last_seq;
    let page = store.list(&ListQuery::default()).await.expect("list");
    assert_eq!(page.sessions[0].last_seq, head);
}

#[tokio::test]
async fn a_healthy_home_is_healthy_and_check_writes_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    {
        let store = FsStore::open(home.path()).expect("open");
        session(&store, 3).await;
        session(&store, 0).await;
    }
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
    let snapshot = || -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        let mut stack = vec![home.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir").flatten() {
                let md = e.metadata().expect("stat");
                if md.is_dir() {
                    stack.push(e.path());
                }
                out.push((e.path(), md.len()));
            }
        }
        out.sort();
        out
    };
    let before = snapshot();
    // It reports its progress: two session directories found, each checked.
    let progress = CountingProgress::default();
    let report = doctor::check_reporting(home.path(), &progress).expect("check");
    assert_eq!(progress.total(), 2);
    assert_eq!(progress.done(), 2);
    assert_eq!(report.findings, vec![], "{report:?}");
    assert!(report.healthy());
    assert_eq!(report.sessions, 2);
    assert_eq!(report.records, 5);
    assert_eq!(snapshot(), before, "check wrote nothing");

    // An open that rebuilds the index reports each session directory; one
    // that rebuilds nothing reports nothing.
    fs::remove_file(home.path().join("index.sqlite")).expect("remove the index");
    let progress = CountingProgress::default();
    FsStore::open_reporting(home.path(), &progress).expect("open");
    assert_eq!(progress.total(), 2);
    assert_eq!(progress.done(), 2);
    let progress = CountingProgress::default();
    FsStore::open_reporting(home.path(), &progress).expect("open");
    assert_eq!(progress.total(), 0);
}

#[tokio::test]
async fn fix_repairs_a_damaged_home_without_losing_a_record() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (_, torn) = session(&store, 3).await;
    let (corrupt_id, corrupt_last) = session(&store, 3).await;
    let (_, derived) = session(&store, 3).await;
    let (_, middle) = session(&store, 3).await;
    let (_, gone) = session(&store, 1).await;
    drop(store);
    let count = |dir: &Path| line_count(&dir.join(LOG_FILE));
    let records: Vec<usize> = [&torn, &corrupt_last, &derived, &middle]
        .iter()
        .map(|d| count(d))
        .collect();

    // A torn write, a complete but unreadable last line, lost or garbled
    // derived files, a corrupt line in the middle, a session removed behind
    // the index's back, a stale temp file, loose permissions.
    append(&torn.join(LOG_FILE), br#"{"v":1,"seq":5,"ts":"2026-"#);
    append(&corrupt_last.join(LOG_FILE), b"{\"v\":1,\"seX\":5}\n");
    fs::remove_file(derived.join(META_FILE)).expect("rm");
    fs::write(derived.join(TRANSCRIPT_FILE), "garbage\n").expect("write");
    let log = middle.join(LOG_FILE);
    let text = fs::read_to_string(&log).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{not json";
    fs::write(&log, lines.join("\n") + "\n").expect("write");
    fs::remove_dir_all(&gone).expect("rm");
    fs::write(home.path().join(".config.toml.tmp-4000000000"), "x").expect("tmp");
    fs::write(home.path().join("config.toml"), "[server]\ntoken = \"t\"\n").expect("config");
    fs::set_permissions(
        home.path().join("config.toml"),
        fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o777)).expect("chmod");

    let report = doctor::check(home.path()).expect("check");
    let found = kinds(&report);
    for kind in [
        FindingKind::TornTail,
        FindingKind::UncommittedTail,
        FindingKind::Metadata,
        FindingKind::Transcript,
        FindingKind::CorruptLines,
        FindingKind::IndexOrphanRow,
        FindingKind::TempFile,
        FindingKind::Permissions,
    ] {
        assert!(found.contains(&kind), "{kind:?} in {report:#?}");
    }
    assert!(!report.healthy());

    let fixed = doctor::fix(home.path()).expect("fix");
    // The corrupt middle line cannot be repaired without losing it: it stays
    // reported (with the seq gap it makes, and the transcript that may hold
    // its only readable copy); everything else is clean (the quarantine is
    // a notice).
    let mut problems: Vec<_> = fixed
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .map(|f| (f.kind, f.session.clone()))
        .collect();
    problems.sort_by_key(|p| format!("{p:?}"));
    let middle_id = middle
        .file_name()
        .and_then(|n| n.to_str())
        .map(String::from);
    assert_eq!(
        problems,
        vec![
            (FindingKind::BadSequence, middle_id.clone()),
            (FindingKind::CorruptLines, middle_id.clone()),
            (FindingKind::Transcript, middle_id),
        ],
        "{fixed:#?}"
    );
    assert!(fixed.fixed.len() >= 8, "{fixed:#?}");
    assert!(kinds(&fixed).contains(&FindingKind::Quarantine));

    // Every record is still there; the unreadable line moved aside.
    assert_eq!(count(&torn), records[0]);
    assert_eq!(count(&corrupt_last), records[1]);
    // In the store's quarantine shape, with the seq it burns.
    let quarantined: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(corrupt_last.join(QUARANTINE_FILE)).expect("quarantine"),
    )
    .expect("one JSON line");
    assert_eq!(quarantined["seq"], 5);
    assert_eq!(quarantined["line"], "{\"v\":1,\"seX\":5}");
    assert_eq!(count(&derived), records[2]);
    assert_eq!(count(&middle), records[3]);
    assert!(derived.join(META_FILE).is_file());
    assert_eq!(line_count(&derived.join(TRANSCRIPT_FILE)), 3);
    assert!(!home.path().join(".config.toml.tmp-4000000000").exists());
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&home.path().join("config.toml")), 0o600);
    assert_eq!(mode(home.path()), 0o755);

    // The store agrees.
    let store = FsStore::open(home.path()).expect("open");
    assert_eq!(store.indexed_sessions().expect("count"), 4);
    let again = doctor::check(home.path()).expect("check");
    assert_eq!(kinds(&again), kinds(&fixed));
    // The quarantined record's seq is never reused.
    push(
        &store,
        &corrupt_id,
        vec![weft_store::conformance::text(Role::User, "after the fix")],
    )
    .await;
    assert_eq!(store.get(&corrupt_id).await.expect("get").last_seq, 6);
}

#[tokio::test]
async fn symlinks_and_bad_sequences_are_reported_not_followed() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (_, linked) = session(&store, 1).await;
    let (_, gap) = session(&store, 3).await;
    drop(store);
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("meta.json");
    fs::rename(linked.join(META_FILE), &target).expect("mv");
    std::os::unix::fs::symlink(&target, linked.join(META_FILE)).expect("symlink");
    // A torn tail in the session with the symlink: not repaired through it.
    append(&linked.join(LOG_FILE), b"{\"v\":1,");
    // Drop seq 3 from the other log.
    let log = gap.join(LOG_FILE);
    let text = fs::read_to_string(&log).expect("read");
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("\"seq\":3,")).collect();
    fs::write(&log, kept.join("\n") + "\n").expect("write");

    let outside_before = fs::read(&target).expect("read");
    let report = doctor::check(home.path()).expect("check");
    let symlink = report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Symlink)
        .expect("the symlink is reported");
    assert_eq!(symlink.path, linked.join(META_FILE));
    assert!(!symlink.fixable);
    assert!(
        kinds(&report).contains(&FindingKind::BadSequence),
        "{report:#?}"
    );
    let fixed = doctor::fix(home.path()).expect("fix");
    assert!(kinds(&fixed).contains(&FindingKind::Symlink));
    assert!(kinds(&fixed).contains(&FindingKind::BadSequence));
    assert!(
        fs::symlink_metadata(linked.join(META_FILE))
            .expect("stat")
            .is_symlink()
    );
    assert!(
        kinds(&fixed).contains(&FindingKind::TornTail),
        "left alone: {fixed:#?}"
    );
    assert_eq!(
        fs::read(&target).expect("read"),
        outside_before,
        "the file behind the symlink was not written"
    );
}

#[tokio::test]
async fn sqlite_store_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("weft.sqlite");
    let store = SqliteStore::open(&file).expect("open");
    let meta = new_meta("doctor-sqlite");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    push(&store, &id, vec![text(Role::User, "hi")]).await;
    drop(store);
    let report = doctor::check_sqlite(&file).expect("check");
    assert!(report.healthy(), "{report:?}");
    assert_eq!((report.sessions, report.records), (1, 2));
    // A record removed behind the store's back.
    let conn = rusqlite::Connection::open(&file).expect("open");
    conn.execute("DELETE FROM records WHERE seq = 1", [])
        .expect("delete");
    drop(conn);
    let report = doctor::check_sqlite(&file).expect("check");
    assert_eq!(kinds(&report), vec![FindingKind::BadSequence]);
}

#[tokio::test]
async fn a_damaged_index_is_set_aside_and_rebuilt() {
    let home = tempfile::tempdir().expect("tempdir");
    {
        let store = FsStore::open(home.path()).expect("open");
        session(&store, 2).await;
    }
    let index = home.path().join("index.sqlite");
    fs::write(&index, "garbage, not a database").expect("write");
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(home.path().join(format!("index.sqlite{suffix}")));
    }
    let report = doctor::check(home.path()).expect("check");
    assert_eq!(kinds(&report), vec![FindingKind::Index], "{report:#?}");
    let fixed = doctor::fix(home.path()).expect("fix");
    assert!(fixed.healthy(), "{fixed:#?}");
    assert_eq!(kinds(&fixed), vec![]);
    let aside = fs::read_dir(home.path())
        .expect("read_dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("index.sqlite.damaged-")
        })
        .count();
    assert_eq!(aside, 1, "the damaged index is kept aside");
    let store = FsStore::open(home.path()).expect("open");
    assert_eq!(store.indexed_sessions().expect("count"), 1);
}
