//! A helper for the crash test (`tests/crash.rs`): opens a store, creates
//! the session if needed, then appends batches in a loop forever, printing
//! `<last seq of the batch> <batch size>` (flushed) after each append is
//! acknowledged. The test kills it with SIGKILL at random moments.
//!
//! Usage: `weft-store-crash-writer <fs|sqlite> <path> <session-id>`

use std::io::Write;

use weft_core::record::{Record, RecordKind};
use weft_core::session::{Project, SessionMeta};
use weft_core::store::{Store, StoreError};
use weft_core::{BranchId, Message, Role, SessionId};

fn usage() -> ! {
    eprintln!("usage: weft-store-crash-writer <fs|sqlite> <path> <session-id>");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), StoreError> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        usage();
    }
    let store: Box<dyn Store> = match args[1].as_str() {
        "fs" => Box::new(weft_store::FsStore::open(&args[2])?),
        "sqlite" => Box::new(weft_store::SqliteStore::open(&args[2])?),
        _ => usage(),
    };
    let id = SessionId::parse(args[3].as_str())?;
    let mut head = match store.get(&id).await {
        Ok(meta) => meta.last_seq,
        Err(StoreError::NotFound(_)) => {
            let meta = SessionMeta::new(
                id.clone(),
                Project::from_dir(std::path::Path::new("/crash")),
                "base",
            );
            store.create(meta, Vec::new()).await?.last_seq
        }
        Err(e) => return Err(e),
    };
    let mut stdout = std::io::stdout();
    let mut n: u64 = 0;
    loop {
        n += 1;
        let size = 1 + (n % 3) as usize;
        let kinds = (0..size).map(|i| {
            let seq = head + 1 + i as u64;
            // The text names the seq and its batch, so the test can check each
            // record and that no batch landed in part.
            RecordKind::message(Message::text(
                BranchId::main(),
                if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                format!(
                    "record {seq} batch {}-{} {}",
                    head + 1,
                    head + size as u64,
                    "x".repeat(((seq * 37) % 2000) as usize)
                ),
            ))
        });
        let meta = store.append(&id, head, Record::batch(head, kinds)).await?;
        head = meta.last_seq;
        // A failed print means the test stopped listening: stop too.
        if writeln!(stdout, "{head} {size}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(());
        }
    }
}
