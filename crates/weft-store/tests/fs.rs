//! Behaviour specific to the fs backend: the on-disk layout, recovery from
//! torn and corrupt log lines, metadata.json and index rebuilds, the
//! advisory lock, bounded reads and the events cap.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::record::{Record, RecordKind};
use weft_core::store::{ListQuery, Store};
use weft_core::{Role, SessionId};
use weft_store::FsStore;
use weft_store::conformance::{calls, new_meta, push, result, text};
use weft_store::fs::{
    EVENTS_CAP_BYTES, LOCK_FILE, LOG_FILE, META_FILE, QUARANTINE_FILE, TRANSCRIPT_FILE,
};

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

async fn session(store: &FsStore, n: usize) -> (SessionId, PathBuf) {
    let meta = new_meta("fs-tests");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    for i in 0..n {
        push(store, &id, vec![text(Role::User, &format!("message {i}"))]).await;
    }
    // Its derived files too (they are written in the background).
    store.flush_derived();
    let dir = store.session_dir(&id).expect("dir");
    (id, dir)
}

#[tokio::test]
async fn layout_and_amplifier_transcript() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let meta = new_meta("layout");
    let slug = meta.project.slug.clone();
    let id = meta.id.clone();
    store
        .create(
            meta,
            vec![text(Role::System, "be nice"), text(Role::User, "hi")],
        )
        .await
        .expect("create");
    push(&store, &id, vec![calls(&["c1"]), result("c1", "contents")]).await;
    // The derived files are written in the background: wait for them.
    store.flush_derived();
    let dir = home
        .path()
        .join("projects")
        .join(&slug)
        .join("sessions")
        .join(id.as_str());
    assert_eq!(store.session_dir(&id), Some(dir.clone()));
    for f in [LOG_FILE, META_FILE, TRANSCRIPT_FILE, LOCK_FILE] {
        assert!(dir.join(f).is_file(), "{f} exists");
    }
    assert!(home.path().join("index.sqlite").is_file());
    let t = lines(&dir.join(TRANSCRIPT_FILE));
    assert_eq!(t.len(), 3, "system messages stay out of the transcript");
    assert_eq!(t[0]["role"], "user");
    assert_eq!(t[0]["content"], "hi");
    assert_eq!(
        t[1]["tool_calls"],
        json!([{"id": "c1", "tool": "read_file", "arguments": {"path": "c1.txt"}}])
    );
    assert_eq!(t[2]["role"], "tool");
    assert_eq!(t[2]["tool_call_id"], "c1");
    assert_eq!(t[2]["content"], "contents");
    assert!(t.iter().all(|l| l["timestamp"].is_string()));
    assert_eq!(t[2]["seq"], 5, "each line names its log record");
    // metadata.json is refreshed lazily: at create, when a turn starts, on
    // metadata changes, and when the log outgrows it; it records how much
    // log it covers.
    let read_meta = || -> Value {
        serde_json::from_slice(&fs::read(dir.join(META_FILE)).expect("read")).expect("json")
    };
    let m = read_meta();
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["last_seq"], 3);
    assert!(m["log_bytes"].as_u64().expect("log_bytes") > 0);
    store
        .update_meta(
            &id,
            weft_core::record::MetaPatch {
                name: Some("named".into()),
                ..Default::default()
            },
        )
        .await
        .expect("rename");
    store.flush_derived();
    let m = read_meta();
    assert_eq!(m["last_seq"], 6);
    assert_eq!(m["name"], "named");
    assert_eq!(
        m["log_bytes"],
        fs::metadata(dir.join(LOG_FILE)).expect("stat").len()
    );
    let log = lines(&dir.join(LOG_FILE));
    assert_eq!(log.len(), 6);
    assert_eq!(
        log[1]["more"], true,
        "all records of a batch but the last carry the marker"
    );
    assert!(log[2].get("more").is_none());

    // A child session is a sibling directory naming its parent.
    let mut child = new_meta("layout");
    child.parent_id = Some(id.clone());
    child.agent_name = Some("explorer".into());
    child.id = SessionId::child_of(&id, "explorer");
    let child = store.create(child, vec![]).await.expect("create child");
    let child_dir = store.session_dir(&child.id).expect("child dir");
    assert_eq!(child_dir.parent(), dir.parent());
    let cm: Value =
        serde_json::from_slice(&fs::read(child_dir.join(META_FILE)).expect("read")).expect("json");
    assert_eq!(cm["parent_id"], id.as_str());
    assert_eq!(cm["agent_name"], "explorer");
}

#[tokio::test]
async fn torn_last_line_is_ignored_then_truncated() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 3).await;
    let log = dir.join(LOG_FILE);
    let good_len = fs::metadata(&log).expect("stat").len();
    // A torn write: half a record, no newline.
    let mut f = OpenOptions::new().append(true).open(&log).expect("open");
    f.write_all(br#"{"v":1,"seq":5,"ts":"2026-01-01T00:00:00Z","kind":{"type":"mess"#)
        .expect("write");
    drop(f);
    let reopened = FsStore::open(home.path()).expect("open");
    assert_eq!(reopened.get(&id).await.expect("get").last_seq, 4);
    assert_eq!(reopened.read(&id, 1, None).await.expect("read").len(), 4);
    assert_eq!(reopened.tail(&id, 2).await.expect("tail")[1].seq, 4);
    push(&reopened, &id, vec![text(Role::User, "after the crash")]).await;
    let all = lines(&log);
    assert_eq!(all.len(), 5, "the torn line was truncated, not kept");
    assert_eq!(all[4]["seq"], 5);
    assert!(fs::metadata(&log).expect("stat").len() > good_len);
    assert_eq!(
        store
            .get(&id)
            .await
            .expect("the first instance sees the change")
            .last_seq,
        5
    );
}

#[tokio::test]
async fn torn_batch_is_not_committed() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 1).await;
    let log = dir.join(LOG_FILE);
    // The first two lines of a three-record batch made it, the last did not.
    let batch = Record::batch(
        2,
        [
            text(Role::User, "a"),
            text(Role::Assistant, "b"),
            text(Role::User, "c"),
        ],
    );
    let mut bytes = Vec::new();
    for r in &batch[..2] {
        let mut line = serde_json::to_vec(r).expect("json");
        line.pop();
        line.extend_from_slice(br#","more":true}"#);
        line.push(b'\n');
        bytes.extend(line);
    }
    OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("write");
    let reopened = FsStore::open(home.path()).expect("open");
    assert_eq!(
        reopened.get(&id).await.expect("get").last_seq,
        2,
        "a batch without its last line did not land"
    );
    assert_eq!(reopened.read(&id, 1, None).await.expect("read").len(), 2);
    // The next append takes over seq 3.
    let meta = push(&reopened, &id, vec![text(Role::User, "retry")]).await;
    assert_eq!(meta.last_seq, 3);
    let texts: Vec<String> = reopened
        .read(&id, 1, None)
        .await
        .expect("read")
        .iter()
        .filter_map(|r| r.as_message().map(|m| m.text_content()))
        .collect();
    assert_eq!(texts, vec!["message 0", "retry"]);
}

#[tokio::test]
async fn corrupt_middle_line_is_skipped() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 5).await;
    let log = dir.join(LOG_FILE);
    let text_before = fs::read_to_string(&log).expect("read");
    let mut ls: Vec<&str> = text_before.lines().collect();
    ls[3] = "{this is not json";
    fs::write(&log, format!("{}\n", ls.join("\n"))).expect("write");
    let _ = fs::remove_file(dir.join(META_FILE));
    let reopened = FsStore::open(home.path()).expect("open");
    let seqs: Vec<u64> = reopened
        .read(&id, 1, None)
        .await
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 5, 6],
        "the lines around the corrupt one stay readable"
    );
    let meta = reopened.get(&id).await.expect("get");
    assert_eq!(meta.last_seq, 6);
    assert_eq!(meta.message_count, 4);
    assert_eq!(reopened.tail(&id, 3).await.expect("tail").len(), 3);
    push(&reopened, &id, vec![text(Role::User, "still appendable")]).await;
}

#[tokio::test]
async fn metadata_json_is_a_cache() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 3).await;
    let want = store.get(&id).await.expect("get");
    let meta_path = dir.join(META_FILE);
    let stale = fs::read(&meta_path).expect("read");
    push(&store, &id, vec![text(Role::User, "newer")]).await;
    store.flush_derived();
    let want2 = store.get(&id).await.expect("get");

    // Stale: written before the last append.
    fs::write(&meta_path, &stale).expect("write");
    assert_eq!(
        FsStore::open(home.path())
            .expect("open")
            .get(&id)
            .await
            .expect("get"),
        want2
    );
    // Corrupt.
    fs::write(&meta_path, b"{\"id\": 12").expect("write");
    assert_eq!(
        FsStore::open(home.path())
            .expect("open")
            .get(&id)
            .await
            .expect("get"),
        want2
    );
    // Missing.
    fs::remove_file(&meta_path).expect("rm");
    let s = FsStore::open(home.path()).expect("open");
    assert_eq!(s.get(&id).await.expect("get"), want2);
    assert_ne!(want, want2);
    // The next append rewrites it, and the transcript too.
    fs::remove_file(dir.join(TRANSCRIPT_FILE)).expect("rm");
    push(&s, &id, vec![text(Role::User, "again")]).await;
    s.flush_derived();
    let m: Value = serde_json::from_slice(&fs::read(&meta_path).expect("read")).expect("json");
    assert_eq!(m["last_seq"], 6);
    assert_eq!(
        lines(&dir.join(TRANSCRIPT_FILE)).len(),
        5,
        "the transcript was rebuilt from the log"
    );
}

#[tokio::test]
async fn index_is_rebuilt_when_missing_or_stale() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(session(&store, 1).await.0);
    }
    drop(store);
    fs::remove_file(home.path().join("index.sqlite")).expect("rm index");
    let _ = fs::remove_file(home.path().join("index.sqlite-wal"));
    let _ = fs::remove_file(home.path().join("index.sqlite-shm"));
    let store = FsStore::open(home.path()).expect("open");
    assert_eq!(store.indexed_sessions().expect("count"), 5);
    let page = store.list(&ListQuery::default()).await.expect("list");
    assert_eq!(page.sessions.len(), 5);
    assert_eq!(page.sessions[0].id, ids[4], "newest first after a rebuild");

    // A session directory removed behind the store's back disappears from
    // the listing of the next open; one added appears.
    let gone = store.session_dir(&ids[0]).expect("dir");
    fs::remove_dir_all(&gone).expect("rm");
    let other_home = tempfile::tempdir().expect("tempdir");
    let other = FsStore::open(other_home.path()).expect("open");
    let (foreign, foreign_dir) = session(&other, 2).await;
    let target = gone.parent().expect("sessions dir").join(foreign.as_str());
    fs::rename(&foreign_dir, &target).expect("move a session in");
    let store = FsStore::open(home.path()).expect("open");
    let listed: Vec<SessionId> = store
        .list(&ListQuery::default())
        .await
        .expect("list")
        .sessions
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed.len(), 5);
    assert!(!listed.contains(&ids[0]));
    assert!(listed.contains(&foreign));
    assert_eq!(
        store
            .resolve(&foreign.as_str()[..20])
            .await
            .expect("resolve"),
        foreign
    );

    // A writer died between a log write and its index update: its row lags,
    // and the session is in `touched` under a writer whose lock is gone.
    let conn = rusqlite::Connection::open(home.path().join("index.sqlite")).expect("sqlite");
    conn.execute(
        "UPDATE sessions SET last_seq = 1, meta = replace(meta, '\"last_seq\":3', '\"last_seq\":1') WHERE id = ?1",
        [foreign.as_str()],
    )
    .expect("update");
    conn.execute(
        "INSERT INTO touched (writer, id) VALUES ('0195aaaa-dead-7000-8000-000000000000', ?1)",
        [foreign.as_str()],
    )
    .expect("insert");
    drop(conn);
    let store = FsStore::open(home.path()).expect("open");
    let page = store.list(&ListQuery::default()).await.expect("list");
    let row = page
        .sessions
        .iter()
        .find(|m| m.id == foreign)
        .expect("listed");
    assert_eq!(row.last_seq, 3, "the dead writer's session was re-read");
    let conn = rusqlite::Connection::open(home.path().join("index.sqlite")).expect("sqlite");
    let left: i64 = conn
        .query_row("SELECT count(*) FROM touched", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0, "the dead writer is forgotten");
    drop(conn);
    // A live instance's writer lock is respected, and a clean drop removes it.
    push(&store, &foreign, vec![text(Role::User, "alive")]).await;
    let writers = home.path().join("writers");
    assert_eq!(fs::read_dir(&writers).expect("dir").count(), 1);
    let other = FsStore::open(home.path()).expect("open");
    assert_eq!(
        fs::read_dir(&writers).expect("dir").count(),
        1,
        "a live writer is not reaped"
    );
    drop(other);
    drop(store);
    assert_eq!(
        fs::read_dir(&writers).expect("dir").count(),
        0,
        "a clean shutdown removes its lock"
    );

    // Junk in the sessions directory is ignored.
    fs::create_dir_all(gone.parent().expect("dir").join("not a valid id")).expect("mkdir");
    fs::create_dir_all(gone.parent().expect("dir").join("emptydir")).expect("mkdir");
    let store = FsStore::open(home.path()).expect("open");
    assert_eq!(store.indexed_sessions().expect("count"), 5);
}

#[tokio::test]
async fn two_stores_on_one_home_see_each_other() {
    let home = tempfile::tempdir().expect("tempdir");
    let a = FsStore::open(home.path()).expect("open");
    let b = FsStore::open(home.path()).expect("open");
    let (id, _) = session(&a, 1).await;
    assert_eq!(b.get(&id).await.expect("b sees a's session").last_seq, 2);
    push(&b, &id, vec![text(Role::User, "from b")]).await;
    let stale = Record::batch(2, [text(Role::User, "from a, stale")]);
    assert!(
        a.append(&id, 2, stale)
            .await
            .is_err_and(|e| e.is_conflict()),
        "a's view of the head is re-read under the lock"
    );
    assert_eq!(a.get(&id).await.expect("get").last_seq, 3);
    // b's index update is applied by its worker right after its append
    // returns; waiting on b's queue makes the check deterministic.
    b.indexed_sessions().expect("count");
    assert_eq!(
        a.list(&ListQuery::default()).await.expect("list").sessions[0].last_seq,
        3
    );
}

#[tokio::test]
async fn the_lock_serialises_writers() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsStore::open(home.path()).expect("open"));
    let (id, dir) = session(&store, 1).await;
    // Another process holds the session's lock.
    let held = OpenOptions::new()
        .write(true)
        .open(dir.join(LOCK_FILE))
        .expect("open lock");
    held.lock().expect("lock");
    let task = {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move { push(&*store, &id, vec![text(Role::User, "waits")]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the append waits for the lock");
    assert_eq!(
        store.get(&id).await.expect("readers do not wait").last_seq,
        2
    );
    held.unlock().expect("unlock");
    let meta = task.await.expect("task");
    assert_eq!(meta.last_seq, 3);
}

#[tokio::test]
async fn tail_and_ranged_reads_do_not_read_the_whole_log() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let meta = new_meta("bounded");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    let body = "x".repeat(400);
    let mut head = 1;
    for _ in 0..20 {
        let kinds: Vec<RecordKind> = (0..1000).map(|_| text(Role::User, &body)).collect();
        head = store
            .append(&id, head, Record::batch(head, kinds))
            .await
            .expect("append")
            .last_seq;
    }
    let log_len = fs::metadata(store.session_dir(&id).expect("dir").join(LOG_FILE))
        .expect("stat")
        .len();
    assert!(log_len > 10_000_000);
    let before = store.bytes_read();
    let tail = store.tail(&id, 10).await.expect("tail");
    let used = store.bytes_read() - before;
    assert_eq!(tail.len(), 10);
    assert!(
        used <= 64 * 1024,
        "tail(10) read {used} bytes of a {log_len}-byte log"
    );
    let before = store.bytes_read();
    let mid = store.read(&id, 10_001, Some(5)).await.expect("read");
    let used = store.bytes_read() - before;
    assert_eq!(
        mid.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![10_001, 10_002, 10_003, 10_004, 10_005]
    );
    assert!(
        used <= 512 * 1024,
        "read(10001, 5) read {used} bytes of a {log_len}-byte log"
    );
    let before = store.bytes_read();
    store.get(&id).await.expect("get");
    assert!(
        store.bytes_read() - before <= 64 * 1024,
        "get reads the head, not the log"
    );
}

#[tokio::test]
async fn events_are_capped() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 0).await;
    let big = "e".repeat(100 * 1024);
    let n = (EVENTS_CAP_BYTES / (100 * 1024)) as usize + 20;
    for i in 0..n {
        store
            .write_events(&id, &[json!({"event": "x", "i": i, "pad": big})])
            .await
            .expect("write");
    }
    let size = fs::metadata(dir.join("events.jsonl")).expect("stat").len();
    assert!(size <= EVENTS_CAP_BYTES, "events.jsonl is {size} bytes");
    let last = store.read_events(&id, 3).await.expect("read");
    let is: Vec<u64> = last.iter().map(|e| e["i"].as_u64().expect("i")).collect();
    assert_eq!(
        is,
        vec![n as u64 - 3, n as u64 - 2, n as u64 - 1],
        "the newest events are kept"
    );
    let all = store.read_events(&id, usize::MAX).await.expect("read");
    assert!(
        all.len() < n && all.len() > n / 3,
        "the oldest were dropped ({} kept)",
        all.len()
    );
}

#[tokio::test]
async fn rewinding_the_default_branch_rewrites_the_transcript() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 4).await;
    assert_eq!(lines(&dir.join(TRANSCRIPT_FILE)).len(), 4);
    push(
        &store,
        &id,
        vec![RecordKind::Rewind {
            branch: weft_core::BranchId::main(),
            to_seq: 3,
        }],
    )
    .await;
    store.flush_derived();
    let t = lines(&dir.join(TRANSCRIPT_FILE));
    assert_eq!(t.len(), 2);
    assert_eq!(t[1]["content"], "message 1");
}

#[tokio::test]
async fn ids_and_slugs_are_validated() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let mut meta = new_meta("x");
    meta.project.slug = "../escape".into();
    assert!(matches!(
        store.create(meta, vec![]).await,
        Err(weft_core::StoreError::Invalid(_))
    ));
    assert!(!home.path().join("escape").exists());
    assert!(store.find_ids("../", 5).await.expect("find").is_empty());
}

#[tokio::test]
async fn transcript_catches_up_after_a_crash() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 4).await;
    let path = dir.join(TRANSCRIPT_FILE);
    // The process died after the log write, before the transcript write of
    // the last two messages.
    let full = fs::read_to_string(&path).expect("read");
    let kept: Vec<&str> = full.lines().take(2).collect();
    fs::write(&path, format!("{}\n", kept.join("\n"))).expect("write");
    let reopened = FsStore::open(home.path()).expect("open");
    push(&reopened, &id, vec![text(Role::User, "next")]).await;
    reopened.flush_derived();
    let t = lines(&path);
    let contents: Vec<&str> = t
        .iter()
        .map(|l| l["content"].as_str().expect("content"))
        .collect();
    assert_eq!(
        contents,
        vec!["message 0", "message 1", "message 2", "message 3", "next"]
    );
    let seqs: Vec<u64> = t.iter().map(|l| l["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
    // A torn last line is cut off and the missing lines appended.
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(br#"{"role":"user","con"#).expect("write");
    drop(f);
    let again = FsStore::open(home.path()).expect("open");
    push(&again, &id, vec![text(Role::User, "last")]).await;
    again.flush_derived();
    assert_eq!(lines(&path).len(), 6);
}

/// Finding 6 (D7): a damaged `index.sqlite` is moved aside and rebuilt.
#[tokio::test]
async fn damaged_index_is_moved_aside_and_rebuilt() {
    for damage in ["garbage", "truncated"] {
        let home = tempfile::tempdir().expect("tempdir");
        let store = FsStore::open(home.path()).expect("open");
        let mut ids = Vec::new();
        for _ in 0..30 {
            ids.push(session(&store, 1).await.0);
        }
        drop(store);
        let index = home.path().join("index.sqlite");
        let _ = fs::remove_file(home.path().join("index.sqlite-wal"));
        let _ = fs::remove_file(home.path().join("index.sqlite-shm"));
        if damage == "garbage" {
            fs::write(&index, "garbage\n".repeat(100)).expect("garbage");
        } else {
            OpenOptions::new()
                .write(true)
                .open(&index)
                .and_then(|f| f.set_len(200))
                .expect("truncate");
        }
        let store = FsStore::open(home.path())
            .unwrap_or_else(|e| panic!("{damage}: the store opens with a damaged index: {e}"));
        let page = store.list(&ListQuery::default()).await.expect("list");
        assert_eq!(page.sessions.len(), 30, "{damage}");
        let moved: Vec<String> = fs::read_dir(home.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("index.sqlite.bad-"))
            .collect();
        assert_eq!(
            moved.len(),
            1,
            "{damage}: the bad index is kept aside: {moved:?}"
        );
        // The new index is a real one: a later open uses it.
        drop(store);
        let store = FsStore::open(home.path()).expect("reopen");
        assert_eq!(store.indexed_sessions().expect("count"), 30);
    }
}

/// Finding 6 (D8): an index that cannot be opened makes listing scan the
/// session directories instead; a read-only `-shm` left behind is fixed.
#[tokio::test]
async fn unusable_index_falls_back_to_scanning() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, _) = session(&store, 2).await;
    drop(store);
    let index = home.path().join("index.sqlite");
    fs::remove_file(&index).expect("rm");
    let _ = fs::remove_file(home.path().join("index.sqlite-wal"));
    let _ = fs::remove_file(home.path().join("index.sqlite-shm"));
    // Something SQLite cannot open (root ignores file modes).
    fs::create_dir(&index).expect("a directory where the index goes");
    let store = FsStore::open(home.path()).expect("the store opens without its index");
    let page = store.list(&ListQuery::default()).await.expect("list");
    assert_eq!(page.sessions.len(), 1);
    push(&store, &id, vec![text(Role::User, "still works")]).await;
    let (other, _) = session(&store, 1).await;
    assert_eq!(
        store
            .list(&ListQuery::default())
            .await
            .expect("list")
            .sessions[0]
            .id,
        other
    );
    drop(store);
    fs::remove_dir(&index).expect("rmdir");

    // A -shm left 0444 by a read-only open is made writable again.
    use std::os::unix::fs::PermissionsExt;
    let store = FsStore::open(home.path()).expect("open");
    drop(store);
    let shm = home.path().join("index.sqlite-shm");
    fs::write(&shm, b"").expect("shm");
    fs::set_permissions(&shm, fs::Permissions::from_mode(0o444)).expect("chmod");
    let store = FsStore::open(home.path()).expect("open");
    assert_eq!(
        store
            .list(&ListQuery::default())
            .await
            .expect("list")
            .sessions
            .len(),
        2
    );
    if let Ok(m) = fs::metadata(&shm) {
        assert_ne!(
            m.permissions().mode() & 0o200,
            0,
            "the -shm is writable again"
        );
    }
}

/// Finding 12 (D14, D13): session files and directories that are symlinks
/// are refused with a clear error and never written through.
#[tokio::test]
async fn symlinked_session_files_are_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("outside");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 1).await;
    let target = outside.path().join("precious.txt");
    fs::write(&target, "do not overwrite\n").expect("target");
    fs::remove_file(dir.join(LOG_FILE)).expect("rm log");
    std::os::unix::fs::symlink(&target, dir.join(LOG_FILE)).expect("link");

    let fresh = FsStore::open(home.path()).expect("open");
    for s in [&store, &fresh] {
        let err = s.get(&id).await.expect_err("a symlinked log is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = s
            .append(&id, 2, Record::batch(2, vec![text(Role::User, "x")]))
            .await
            .expect_err("no append through a link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // What the daemon's POST /run does for an id it cannot find.
        let mut meta = weft_store::conformance::new_meta("fs-tests");
        meta.id = id.clone();
        let err = s
            .create(meta, vec![])
            .await
            .expect_err("no create over a link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
    assert_eq!(
        fs::read_to_string(&target).expect("read"),
        "do not overwrite\n"
    );

    // A session directory that is a link to a directory outside the store.
    let (id2, dir2) = session(&fresh, 1).await;
    let moved = outside.path().join(id2.as_str());
    fs::rename(&dir2, &moved).expect("move out");
    std::os::unix::fs::symlink(&moved, &dir2).expect("link dir");
    let before = fs::read(moved.join(LOG_FILE)).expect("log");
    let store = FsStore::open(home.path()).expect("open");
    let err = store
        .append(&id2, 2, Record::batch(2, vec![text(Role::User, "x")]))
        .await
        .expect_err("no write through a linked session directory");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(fs::read(moved.join(LOG_FILE)).expect("log"), before);
}

/// Finding 2: a failed atomic write leaves no temp file, and stale temp
/// files of dead writers are swept when the store re-reads the session.
#[tokio::test]
async fn stale_temp_files_are_swept() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 1).await;
    drop(store);
    // A writer (pid that cannot exist) died in the middle of a rewrite; a
    // live process (us) is writing another one right now.
    let dead = dir.join(".transcript.jsonl.tmp-2147483646");
    let live = dir.join(format!(".metadata.json.tmp-{}", std::process::id()));
    fs::write(&dead, "x".repeat(1000)).expect("dead tmp");
    fs::write(&live, "x").expect("live tmp");
    // Make the next open re-read the session (as after a crash).
    fs::remove_file(home.path().join("index.sqlite")).expect("rm index");
    let _ = fs::remove_file(home.path().join("index.sqlite-wal"));
    let _ = fs::remove_file(home.path().join("index.sqlite-shm"));
    let store = FsStore::open(home.path()).expect("open");
    assert!(!dead.exists(), "the dead writer's temp file is removed");
    assert!(live.exists(), "a live writer's temp file is left alone");
    push(&store, &id, vec![text(Role::User, "more")]).await;
}

/// Finding 8 (D3): a complete but unparseable last record is not a torn
/// write: it is moved to `log.quarantine.jsonl` (kept, not destroyed) and
/// its seq is never reused; the next append continues after it.
#[tokio::test]
async fn corrupt_complete_last_record_is_quarantined_and_its_seq_kept() {
    for damage in ["seq renamed", "garbage"] {
        let home = tempfile::tempdir().expect("tempdir");
        let store = FsStore::open(home.path()).expect("open");
        let (id, dir) = session(&store, 3).await; // seqs 1..=4
        let log = dir.join(LOG_FILE);
        let text_before = fs::read_to_string(&log).expect("read");
        let (rest, last) = text_before
            .trim_end_matches('\n')
            .rsplit_once('\n')
            .expect("lines");
        let damaged = if damage == "garbage" {
            "garbage that is not JSON".to_string()
        } else {
            last.replacen("\"seq\"", "\"seX\"", 1)
        };
        fs::write(&log, format!("{rest}\n{damaged}\n")).expect("damage");

        let reopened = FsStore::open(home.path()).expect("open");
        assert_eq!(
            reopened.get(&id).await.expect("get").last_seq,
            4,
            "{damage}: the damaged record's seq stays used"
        );
        let seqs: Vec<u64> = reopened
            .read(&id, 1, None)
            .await
            .expect("read")
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3], "{damage}");
        let meta = push(&reopened, &id, vec![text(Role::User, "after")]).await;
        assert_eq!(meta.last_seq, 5, "{damage}: the append continues after it");

        let q = lines(&dir.join(QUARANTINE_FILE));
        assert_eq!(q.len(), 1, "{damage}");
        assert_eq!(q[0]["seq"], 4, "{damage}");
        assert_eq!(
            q[0]["line"],
            damaged.as_str(),
            "{damage}: the bytes are kept"
        );
        let all = lines(&log);
        let log_seqs: Vec<u64> = all
            .iter()
            .map(|l| l["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(
            log_seqs,
            vec![1, 2, 3, 5],
            "{damage}: cut from the log, seq 4 not reused"
        );
        assert_eq!(store.get(&id).await.expect("get").last_seq, 5);
        assert_eq!(
            store.quarantined(&id).await.expect("quarantined"),
            vec![4],
            "{damage}: reported (`weft session show`)"
        );
        let again = FsStore::open(home.path()).expect("open");
        push(&again, &id, vec![text(Role::User, "again")]).await;
        assert_eq!(again.get(&id).await.expect("get").last_seq, 6);
    }
}

/// Finding 8: a seq recorded in `log.quarantine.jsonl` stays used even once
/// the damaged lines are gone from the log (an append that cut them but
/// could not write its own batch).
#[tokio::test]
async fn quarantined_seqs_are_never_reused() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let (id, dir) = session(&store, 1).await; // seqs 1..=2
    fs::write(
        dir.join(QUARANTINE_FILE),
        "{\"seq\":3,\"offset\":0,\"line\":\"x\"}\n{\"seq\":4,\"offset\":9,\"line\":\"y\"}\n",
    )
    .expect("quarantine");
    let reopened = FsStore::open(home.path()).expect("open");
    assert_eq!(reopened.get(&id).await.expect("get").last_seq, 4);
    let meta = push(&reopened, &id, vec![text(Role::User, "next")]).await;
    assert_eq!(meta.last_seq, 5);
    let seqs: Vec<u64> = reopened
        .read(&id, 1, None)
        .await
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 5]);
}

/// Finding 6: with `synchronous=OFF`, a power loss can corrupt the index in
/// pages an open does not read. After a writer died (as in a power loss),
/// the open checks the index and rebuilds a damaged one.
#[tokio::test]
async fn index_damaged_by_a_crash_is_rebuilt() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    for _ in 0..40 {
        session(&store, 1).await;
    }
    drop(store);
    // A writer that died without cleaning up (its lock file is free).
    fs::create_dir_all(home.path().join("writers")).expect("writers");
    fs::write(
        home.path()
            .join("writers")
            .join(format!("{}.lock", SessionId::new_v7())),
        "",
    )
    .expect("dead writer");
    // Damage the pages after the first two (the schema and the small
    // `info` table stay readable, so the open itself succeeds).
    let index = home.path().join("index.sqlite");
    let len = fs::metadata(&index).expect("index").len();
    assert!(len > 4 * 4096, "the index has several pages");
    let f = OpenOptions::new().write(true).open(&index).expect("open");
    use std::os::unix::fs::FileExt;
    for page in (2..len / 4096).step_by(2) {
        f.write_all_at(&[0xA5; 512], page * 4096 + 100)
            .expect("damage");
    }
    drop(f);
    let store = FsStore::open(home.path()).expect("the store opens");
    assert_eq!(
        store
            .list(&ListQuery::default())
            .await
            .expect("list")
            .sessions
            .len(),
        40
    );
    assert_eq!(store.indexed_sessions().expect("count"), 40);
}

/// The derived files are written off the append path: without any call to
/// `flush_derived`, the background worker brings them up to date soon
/// after the appends, and a store that closes writes what is left.
#[tokio::test]
async fn derived_files_follow_the_log_in_the_background() {
    let home = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(home.path()).expect("open");
    let meta = new_meta("derived");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    for i in 0..5 {
        push(&store, &id, vec![text(Role::User, &format!("m{i}"))]).await;
    }
    let dir = store.session_dir(&id).expect("dir");
    let up_to_date = |n: usize, last_seq: u64| {
        let meta: Value = fs::read(dir.join(META_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        lines(&dir.join(TRANSCRIPT_FILE)).len() == n && meta["last_seq"] == last_seq
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !up_to_date(5, 6) {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not write the derived files within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Closing the store writes what the worker had not written yet.
    push(&store, &id, vec![text(Role::User, "last")]).await;
    drop(store);
    assert!(
        up_to_date(6, 7),
        "dropping the store wrote the derived files"
    );
}
