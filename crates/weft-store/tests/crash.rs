//! Crash test: a child process appends in a loop and is killed with SIGKILL
//! at random moments, 50 times per backend. After each kill the session
//! opens, every append the child saw acknowledged is there, no batch landed
//! in part, the log is gapless, and appending continues.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use weft_core::record::{Record, RecordKind};
use weft_core::store::Store;
use weft_core::{BranchId, Message, Role, SessionId};

const KILLS: usize = 50;

fn parse_text(text: &str) -> Option<(u64, u64, u64)> {
    // "record {seq} batch {first}-{last} xxx…"
    let mut words = text.split(' ');
    if words.next()? != "record" {
        return None;
    }
    let seq = words.next()?.parse().ok()?;
    if words.next()? != "batch" {
        return None;
    }
    let (a, b) = words.next()?.split_once('-')?;
    Some((seq, a.parse().ok()?, b.parse().ok()?))
}

async fn check(store: &dyn Store, id: &SessionId, acked: u64, round: usize) -> u64 {
    let meta = store.get(id).await.expect("the session opens after a kill");
    assert!(
        meta.last_seq >= acked,
        "round {round}: seq {acked} was acknowledged but the log ends at {}",
        meta.last_seq
    );
    let records = store.read(id, 1, None).await.expect("read");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=meta.last_seq).collect::<Vec<_>>(),
        "round {round}: the log is gapless"
    );
    for r in records.iter().skip(1) {
        let m = r.as_message().expect("a message record");
        let (seq, first, last) = parse_text(&m.text_content()).expect("a writer's record");
        assert_eq!(
            seq, r.seq,
            "round {round}: record {} holds the text of {seq}",
            r.seq
        );
        assert!(first <= seq && seq <= last);
        assert!(
            last <= meta.last_seq,
            "round {round}: batch {first}-{last} landed in part (log ends at {})",
            meta.last_seq
        );
    }
    assert_eq!(store.tail(id, 1).await.expect("tail")[0].seq, meta.last_seq);
    // The listing agrees with the log (the index was repaired if the kill
    // fell between a log write and its index update).
    let page = store
        .list(&weft_core::store::ListQuery::default())
        .await
        .expect("list");
    assert_eq!(page.sessions.len(), 1);
    assert_eq!(
        page.sessions[0], meta,
        "round {round}: the listing matches the log"
    );
    // Appending continues.
    let head = meta.last_seq;
    let text = format!("record {} batch {}-{}", head + 1, head + 1, head + 1);
    let after = store
        .append(
            id,
            head,
            Record::batch(
                head,
                [RecordKind::message(Message::text(
                    BranchId::main(),
                    Role::User,
                    text,
                ))],
            ),
        )
        .await
        .expect("appending continues after a crash");
    assert_eq!(after.last_seq, head + 1);
    after.last_seq
}

/// The killed writer's derived files lag its log; opening the store
/// brought `transcript.jsonl` and `metadata.json` up to the log's head.
async fn derived_files_caught_up(
    home: &std::path::Path,
    store: &dyn Store,
    id: &SessionId,
    round: usize,
) {
    let meta = store.get(id).await.expect("get");
    let dir = home
        .join("projects")
        .join(&meta.project.slug)
        .join("sessions")
        .join(id.as_str());
    let text = std::fs::read_to_string(dir.join(weft_store::fs::TRANSCRIPT_FILE))
        .expect("transcript.jsonl");
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    // Every record the writer makes after session_created is a message.
    assert_eq!(
        seqs,
        (2..=meta.last_seq).collect::<Vec<_>>(),
        "round {round}: the transcript was brought up to the log's head at open"
    );
    let file: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(weft_store::fs::META_FILE)).expect("metadata.json"),
    )
    .expect("json");
    assert_eq!(
        file["last_seq"], meta.last_seq,
        "round {round}: metadata.json"
    );
}

fn run_child(backend: &str, path: &std::path::Path, id: &SessionId, millis: u64) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft-store-crash-writer"))
        .args([backend, &path.display().to_string(), id.as_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut last = 0u64;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(seq) = line.split(' ').next().and_then(|s| s.parse().ok()) {
                last = seq;
            }
        }
        last
    });
    std::thread::sleep(Duration::from_millis(millis));
    child.kill().expect("SIGKILL the writer");
    let _ = child.wait();
    reader.join().expect("reader")
}

async fn crash_test(backend: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = match backend {
        "fs" => dir.path().to_path_buf(),
        _ => dir.path().join("weft.sqlite"),
    };
    let id = SessionId::new_v7();
    let mut total_acked = 0;
    for round in 0..KILLS {
        let acked = run_child(backend, &path, &id, 20 + fastrand::u64(0..120));
        // A fresh store instance each round, as a new process would have.
        let store: Box<dyn Store> = match backend {
            "fs" => Box::new(weft_store::FsStore::open(&path).expect("open after a crash")),
            _ => Box::new(weft_store::SqliteStore::open(&path).expect("open after a crash")),
        };
        if acked == 0 && store.get(&id).await.is_err() {
            // Killed before the session was even created.
            continue;
        }
        if backend == "fs" {
            derived_files_caught_up(&path, &*store, &id, round).await;
        }
        let head = check(&*store, &id, acked, round).await;
        total_acked = total_acked.max(head);
    }
    assert!(
        total_acked > 100,
        "the writer made progress ({total_acked} records)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_survives_sigkill() {
    crash_test("fs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill() {
    crash_test("sqlite").await;
}
