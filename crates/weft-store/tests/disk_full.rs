//! Disk-full tests on a small tmpfs (fs and sqlite backends): fill the disk
//! with appends until the store reports a full disk, free some space, and
//! check that no temp file is left, that the store opens and lists on the
//! full disk, that appends succeed again once space returns, and that every
//! acknowledged record is readable with a gapless seq.
//!
//! The read-only home test (finding 16) is here too: it remounts its tmpfs
//! read-only, which stops writes even for root (file modes do not).
//!
//! They mount a tmpfs, so they need root (or `CAP_SYS_ADMIN`): CI runs
//! them as root. When the mount fails the tests FAIL with the reason, they
//! never skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use weft_core::record::Record;
use weft_core::store::{ListQuery, Store, StoreError};
use weft_core::{Role, SessionId};
use weft_store::conformance::{new_meta, text};
use weft_store::fs::{LOG_FILE, TRANSCRIPT_FILE};
use weft_store::{FsStore, SqliteStore};

/// A tmpfs mounted on a temp directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Self { dir },
            Ok(o) => panic!(
                "cannot mount a {size} tmpfs on {} for the disk-full test: {}. \
                 These tests need root (or CAP_SYS_ADMIN) and mount(8); run `cargo test` as root",
                dir.path().display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!(
                "cannot run mount(8) for the disk-full test: {e}. These tests need root and mount(8)"
            ),
        }
    }

    /// Remounts the tmpfs read-only (`ro`) or read-write.
    fn remount(&self, opt: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot remount the tmpfs {opt}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes available on the file system.
    fn free(&self) -> u64 {
        let c = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: zeroed statvfs is a valid out-parameter; `c` is a valid path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs failed");
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Every file under `dir` whose name looks like a temp file of an atomic
/// write (`.<name>.tmp-<pid>`).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if e.file_name().to_string_lossy().contains(".tmp-") {
                out.push(p);
            }
        }
    }
    out
}

/// Appends one message after the current head.
async fn append(store: &dyn Store, id: &SessionId, body: &str) -> Result<u64, StoreError> {
    let head = store.get(id).await?.last_seq;
    let meta = store
        .append(id, head, Record::batch(head, vec![text(Role::User, body)]))
        .await?;
    Ok(meta.last_seq)
}

/// Appends 8 KB messages until the store fails; returns the last
/// acknowledged seq and the error, which must say the disk is full.
async fn fill(store: &dyn Store, id: &SessionId) -> u64 {
    fill_then(store, id, || {}).await
}

/// [`fill`], calling `after` after each acknowledged append.
async fn fill_then(store: &dyn Store, id: &SessionId, after: impl Fn()) -> u64 {
    let big = "x".repeat(8000);
    let mut acked = store.get(id).await.expect("get").last_seq;
    for _ in 0..2000 {
        match append(store, id, &big).await {
            Ok(seq) => {
                acked = seq;
                after();
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("the disk is full: free some space and retry"),
                    "a full disk must be reported as such, got: {msg}"
                );
                return acked;
            }
        }
    }
    panic!("the 2 MB disk never filled up");
}

/// The `seq` of each line of a transcript, which must end with a newline.
fn transcript_seqs(path: &Path) -> Vec<u64> {
    let text = fs::read_to_string(path).expect("transcript");
    assert!(text.is_empty() || text.ends_with('\n'), "no torn last line");
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect()
}

/// Every record from 1 to the head is there, once, and the head covers
/// every acknowledged seq.
async fn check_log(store: &dyn Store, id: &SessionId, acked: u64) {
    let meta = store.get(id).await.expect("get");
    assert!(
        meta.last_seq >= acked,
        "seq {acked} was acknowledged but the log ends at {}",
        meta.last_seq
    );
    let seqs: Vec<u64> = store
        .read(id, 1, None)
        .await
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=meta.last_seq).collect::<Vec<_>>(), "seq gaps");
}

async fn lists(store: &dyn Store, id: &SessionId) {
    let page = store.list(&ListQuery::default()).await.expect("list");
    assert!(
        page.sessions.iter().any(|m| m.id == *id),
        "the session is listed"
    );
}

/// The whole cycle for one backend; `open` opens the store on the tmpfs.
async fn cycle<S: Store>(mnt: &Tmpfs, open: impl Fn() -> Result<S, StoreError>) {
    let filler = mnt.path().join("filler");
    let store = open().expect("open");
    let meta = new_meta("disk-full");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    fs::write(&filler, vec![0u8; 300_000]).expect("filler");

    let acked = fill(&store, &id).await;
    assert!(
        temp_files(mnt.path()).is_empty(),
        "{:?}",
        temp_files(mnt.path())
    );

    // The full disk can be opened and listed, by a second instance too.
    {
        let other = open().expect("the store opens on a full disk");
        lists(&other, &id).await;
        check_log(&other, &id, acked).await;
    }
    lists(&store, &id).await;

    fs::remove_file(&filler).expect("free space");
    let mut acked = acked;
    for i in 0..10 {
        acked = append(&store, &id, &format!("after {i}"))
            .await
            .unwrap_or_else(|e| panic!("append {i} after freeing space: {e}"));
    }
    assert!(
        temp_files(mnt.path()).is_empty(),
        "{:?}",
        temp_files(mnt.path())
    );
    check_log(&store, &id, acked).await;
    drop(store);
    let store = open().expect("reopen");
    lists(&store, &id).await;
    check_log(&store, &id, acked).await;
}

#[tokio::test]
async fn fs_store_recovers_from_a_full_disk() {
    let mnt = Tmpfs::mount("2m");
    let home = mnt.path().join("home");
    cycle(&mnt, || FsStore::open(&home)).await;
}

#[tokio::test]
async fn sqlite_store_recovers_from_a_full_disk() {
    let mnt = Tmpfs::mount("2m");
    let file = mnt.path().join("weft.sqlite");
    cycle(&mnt, || SqliteStore::open(&file)).await;
}

/// The report's F2: the disk fills, `transcript.jsonl` is left torn by a
/// failed append, and less space than the transcript's size is freed.
/// Appends must succeed (the transcript is repaired in place, not
/// rewritten into a temp file that eats the freed space), no temp file may
/// remain, and the store must still open.
#[tokio::test]
async fn fs_torn_transcript_on_a_full_disk_is_repaired_in_place() {
    let mnt = Tmpfs::mount("2m");
    let home = mnt.path().join("home");
    let store = FsStore::open(&home).expect("open");
    let meta = new_meta("disk-full");
    let id = meta.id.clone();
    store.create(meta, vec![]).await.expect("create");
    // An older weft left the temp file of a failed transcript rewrite
    // (its process gone), holding space.
    let leaked = store
        .session_dir(&id)
        .expect("dir")
        .join(".transcript.jsonl.tmp-2147483646");
    fs::write(&leaked, vec![b'x'; 16 * 1024]).expect("leaked temp file");
    let small_filler = mnt.path().join("small-filler");
    fs::write(&small_filler, vec![0u8; 64 * 1024]).expect("filler");
    let big_filler = mnt.path().join("big-filler");
    fs::write(&big_filler, vec![0u8; 640 * 1024]).expect("filler");
    // The transcript keeps pace with the log, as with a writer that pauses
    // between appends (a person typing).
    let acked = fill_then(&store, &id, || store.flush_derived()).await;
    store.flush_derived();

    // Tear the transcript's last line, as an ENOSPC in the append of a
    // writer that then died does.
    let dir = store.session_dir(&id).expect("dir");
    let transcript = dir.join(TRANSCRIPT_FILE);
    let len = fs::metadata(&transcript).expect("transcript").len();
    assert!(
        len > 200_000,
        "the transcript is larger than the freed space"
    );
    fs::OpenOptions::new()
        .write(true)
        .open(&transcript)
        .and_then(|f| f.set_len(len - 100))
        .expect("tear");

    // The writer that tore it is gone (a restarted daemon, another
    // process): a fresh instance finds the torn transcript.
    assert!(leaked.exists());
    drop(store);
    let store = FsStore::open(&home).expect("the store opens on the full disk");
    // Free less space than the transcript holds.
    fs::remove_file(&small_filler).expect("free");
    let mut acked = acked;
    for i in 0..10 {
        acked = append(&store, &id, &format!("small {i}"))
            .await
            .unwrap_or_else(|e| panic!("append {i} after freeing 64 KB: {e}"));
    }
    store.flush_derived();
    assert!(
        temp_files(mnt.path()).is_empty(),
        "{:?}",
        temp_files(mnt.path())
    );
    assert!(
        mnt.free() > 16 * 1024,
        "the freed space stays free (only {} bytes left)",
        mnt.free()
    );
    check_log(&store, &id, acked).await;

    // The transcript was written after the log, so the lines the full disk
    // could not hold are still missing: what is there is whole lines, a
    // gapless run from the first message.
    let seqs = transcript_seqs(&transcript);
    assert_eq!(seqs, (2..2 + seqs.len() as u64).collect::<Vec<_>>());
    // With room for them, the next append brings it up to the head.
    fs::remove_file(&big_filler).expect("free");
    acked = append(&store, &id, "after freeing more")
        .await
        .expect("append after freeing more");
    store.flush_derived();
    assert_eq!(
        transcript_seqs(&transcript),
        (2..=acked).collect::<Vec<_>>()
    );
    assert!(dir.join(LOG_FILE).exists());
    drop(store);
    let store = FsStore::open(&home).expect("the store opens after the recovery");
    lists(&store, &id).await;
}

/// Finding 16 (D16): a read-only home can be listed and shown without a
/// single write, and a write says the home is read-only.
#[tokio::test]
async fn read_only_home_can_be_listed_and_shown() {
    let mnt = Tmpfs::mount("4m");
    let home = mnt.path().join("home");
    let store = FsStore::open(&home).expect("open");
    let meta = new_meta("read-only");
    let id = meta.id.clone();
    store
        .create(meta, vec![text(Role::User, "hello")])
        .await
        .expect("create");
    append(&store, &id, "second").await.expect("append");
    drop(store);
    mnt.remount("ro");
    // A write really fails here (root included).
    assert!(
        fs::write(mnt.path().join("probe"), "x").is_err(),
        "the remount took effect"
    );

    let store = FsStore::open(&home).expect("a read-only home opens");
    lists(&store, &id).await;
    check_log(&store, &id, 3).await;
    let err = append(&store, &id, "third")
        .await
        .expect_err("no write on a read-only home");
    let msg = err.to_string();
    assert!(
        msg.contains("WEFT_HOME") && msg.contains("is read-only"),
        "a write says the home is read-only: {msg}"
    );
    let err = store
        .create(new_meta("read-only"), vec![])
        .await
        .expect_err("no create on a read-only home");
    assert!(err.to_string().contains("is read-only"), "{err}");
    drop(store);

    // Writable again: writes work without a restart of anything else.
    mnt.remount("rw");
    let store = FsStore::open(&home).expect("open");
    append(&store, &id, "third")
        .await
        .expect("append once writable");
}
