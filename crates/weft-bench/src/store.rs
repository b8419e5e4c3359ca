//! `weft-bench store`: the store workloads of issue 3, for each backend
//! (`--backend postgres` runs them on a PostgreSQL server, `--postgres-url`;
//! `--backend redis` on a Redis server, `--redis-url`, by default a private
//! `redis-server` with AOF `appendfsync always` that the run starts and
//! kills; each workload under a fresh key prefix, left in place on a
//! server given by URL; `--backend dynamodb` on a DynamoDB endpoint,
//! `--dynamodb-url dynamodb://host:port`, by default a private moto server
//! from `scripts/dynamodb-local install`, each workload in a fresh table).
//!
//! - `append`: `--turns` turns (a user and an assistant message of about
//!   `--message-bytes` each, one durable append per message) to each of
//!   `--sessions` sessions, interleaved across sessions: records/s and
//!   per-append latency. With `--parallel` each turn's appends run
//!   concurrently across the sessions (one task per session; the session
//!   still gets its appends in order), the shape of many sessions served at
//!   once. `bytes_per_message`: the store's size on disk
//!   afterwards divided by the messages written.
//! - `raw_write_fsync`: the same record lines written to one file per
//!   session with `write` + `fdatasync` per append, the floor a durable
//!   append can reach on this disk; run interleaved with each backend's
//!   append workload (a turn's block each in turn) so both see the same
//!   disk conditions. The `append` line gives `slowdown_vs_raw`.
//! - `load_all` / `view_all` / `tail`: read a `--load-messages` session
//!   whole (and fold it into a view: `view_all` folds by reference, as
//!   `SessionView::from_records`; `view_owned` is `Store::view`, folding
//!   the records it owns), and its last 50 records.
//! - `list_newest`: the newest 20 of `--list-sessions` sessions; also
//!   `open_and_list` (opening the store first, as `weft session list` does).
//! - `fork_middle`: fork a `--fork-turns` session at its middle turn.
//!
//! With `--encrypt` every store is behind the encryption layer
//! (`weft_store::encryption`, a random master key) and every line says
//! `"encrypted":true`; `open_floor` then times the cipher's share of
//! `load_all` alone (see the `open_floor` module).
//!
//! Timed reads run `--runs` times; the JSON line gives the median and the
//! minimum. Every line: `{"bench":"store","backend":…,"figure":…,"value":…,
//! "unit":…, …}`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{EngineBaseline, message};
use serde_json::{Value, json};
use weft_core::memory::MemoryStore;
use weft_core::record::{Record, RecordKind};
use weft_core::session::{Project, SessionMeta};
use weft_core::store::{ForkPoint, ListQuery, Store};
use weft_core::view::SessionView;
use weft_core::{Role, SessionId};
use weft_store::encryption::MasterKey;
use weft_store::{FsStore, SqliteStore};

/// Which backends to run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendArg {
    /// The JSONL file store.
    Fs,
    /// The SQLite store.
    Sqlite,
    /// The in-memory store.
    Memory,
    /// The PostgreSQL store (`--postgres-url`; each workload in a fresh
    /// schema, dropped at the end).
    Postgres,
    /// The Redis store (`--redis-url`, else a private `redis-server`; each
    /// workload under a fresh key prefix).
    Redis,
    /// The DynamoDB store (`--dynamodb-url`, else a private moto server
    /// from `scripts/dynamodb-local install`; each workload in a fresh
    /// table).
    Dynamodb,
    /// fs, sqlite and memory.
    All,
}

/// Flags of `weft-bench store`.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreBenchArgs {
    /// The backend(s) to measure.
    #[arg(long, value_enum, default_value = "all")]
    pub backend: BackendArg,
    /// Sessions in the append workload.
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Turns appended to each session (two messages a turn).
    #[arg(long, default_value_t = 200)]
    pub turns: usize,
    /// Approximate size of each message's text, in bytes.
    #[arg(long, default_value_t = 500)]
    pub message_bytes: usize,
    /// Messages in the session that is loaded whole.
    #[arg(long, default_value_t = 10_000)]
    pub load_messages: usize,
    /// Sessions in the store that is listed.
    #[arg(long, default_value_t = 10_000)]
    pub list_sessions: usize,
    /// Turns of the session that is forked at its middle.
    #[arg(long, default_value_t = 200)]
    pub fork_turns: usize,
    /// Repetitions of each timed read.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Where to put the stores, kept afterwards (default: a temporary
    /// directory, removed). Must be on the disk you want to measure. The
    /// 10,000-session fs store ends up in `<dir>/fs/read/list`, a weft home
    /// for timing `weft session list --all-projects`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Skip the append workload and the raw baseline (the slow part).
    #[arg(long)]
    pub skip_append: bool,
    /// The PostgreSQL server for `--backend postgres`.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres_url: String,
    /// The Redis server for `--backend redis` (default: start a private
    /// `redis-server` with AOF `appendfsync always` in a temporary directory).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// The DynamoDB endpoint for `--backend dynamodb`, as
    /// `dynamodb://host:port` (no table: each workload creates its own;
    /// default: start a private moto server).
    #[arg(long)]
    pub dynamodb_url: Option<String>,
    /// Run each turn's appends concurrently across the sessions.
    #[arg(long)]
    pub parallel: bool,
    /// Put every store behind encryption at rest (a random master key).
    #[arg(long)]
    pub encrypt: bool,
}

/// The postgres stores opened by this run (their schemas are dropped at
/// the end).
static PG_STORES: std::sync::Mutex<Vec<weft_store::postgres::PostgresStore>> =
    std::sync::Mutex::new(Vec::new());

/// A name for the workload directory `root`, unique to this run (the
/// same one when reopened): a postgres schema, a redis key prefix.
fn workload_tag(root: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    format!("{}_{:x}", std::process::id(), h.finish())
}

/// The redis store URL `url` with the key prefix `weft-bench:<tag>:`.
fn with_prefix(url: &str, tag: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}prefix=weft-bench:{tag}:")
}

/// The postgres store for the workload directory `root`: one schema per
/// directory (the same one when reopened).
fn open_postgres(url: &str, root: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let schema = format!("weft_bench_{}", workload_tag(root));
    let store = weft_store::postgres::PostgresStore::connect_lazy(url, Some(&schema))?;
    PG_STORES
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(store.clone());
    Ok(Arc::new(store))
}

fn emit(backend: &str, figure: &str, value: f64, unit: &str, extra: Value) {
    let mut line = json!({"bench": "store", "backend": backend, "figure": figure, "value": round(value), "unit": unit, "encrypted": MASTER_KEY.get().is_some()});
    if let (Some(obj), Value::Object(more)) = (line.as_object_mut(), extra) {
        obj.extend(more);
    }
    println!("{line}");
}

fn round(v: f64) -> f64 {
    if v >= 100.0 {
        v.round()
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The minimum, median and 99th percentile of `samples`.
fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let n = samples.len().max(1);
    let at = |q: f64| {
        samples
            .get(((n as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    (at(0.0), at(0.5), at(0.99))
}

/// New metadata of a session in project directory `project`.
fn meta(project: &str) -> SessionMeta {
    SessionMeta::new(
        SessionId::new_v7(),
        Project::from_dir(Path::new(project)),
        "base",
    )
}

fn open(backend: &str, root: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let store = open_backend(backend, root)?;
    Ok(match MASTER_KEY.get() {
        Some(key) => weft_store::encryption::wrap(store, Some(key.clone())),
        None => store,
    })
}

fn open_backend(backend: &str, root: &Path) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match backend {
        "postgres" => {
            let url = PG_URL
                .get()
                .ok_or_else(|| anyhow::anyhow!("no postgres URL"))?;
            open_postgres(url, root)?
        }
        "redis" => {
            let url = REDIS_URL
                .get()
                .ok_or_else(|| anyhow::anyhow!("no redis URL"))?;
            Arc::new(weft_store::redis::RedisStore::open(&with_prefix(
                url,
                &workload_tag(root),
            ))?)
        }
        "dynamodb" => {
            let base = DYNAMO_URL
                .get()
                .ok_or_else(|| anyhow::anyhow!("no dynamodb URL"))?;
            Arc::new(weft_store::dynamodb::DynamoStore::open(&format!(
                "{}/wb-{}?region=us-east-1&create=true",
                base.trim_end_matches('/'),
                workload_tag(root)
            ))?)
        }
        "fs" => Arc::new(FsStore::open(root)?),
        "sqlite" => Arc::new(SqliteStore::open(root.join("weft.sqlite"))?),
        _ => Arc::new(MemoryStore::new()),
    })
}

/// Apparent and allocated bytes of everything under `root`.
fn disk_usage(root: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                apparent += md.len();
                allocated += md.blocks() * 512;
            }
        }
    }
    (apparent, allocated)
}

/// Appends `n` messages (alternating roles) to `id` in batches of 1000.
async fn fill(
    store: &dyn Store,
    id: &SessionId,
    mut head: u64,
    n: usize,
    bytes: usize,
) -> anyhow::Result<u64> {
    let mut i = 0;
    while i < n {
        let k = (n - i).min(1000);
        let kinds = (i..i + k).map(|j| {
            RecordKind::message(message(
                if j % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                j,
                bytes,
            ))
        });
        head = store
            .append(id, head, Record::batch(head, kinds))
            .await?
            .last_seq;
        i += k;
    }
    Ok(head)
}

/// One turn (a user and an assistant message, one append each) on
/// session `id` at `head`: the new head and the appends' latencies.
async fn one_turn(
    store: &dyn Store,
    id: &SessionId,
    mut head: u64,
    turn: usize,
    bytes: usize,
) -> anyhow::Result<(u64, [Duration; 2])> {
    let mut latencies = [Duration::ZERO; 2];
    for (role, latency) in [Role::User, Role::Assistant]
        .into_iter()
        .zip(&mut latencies)
    {
        let batch = Record::batch(head, [RecordKind::message(message(role, turn, bytes))]);
        let t = Instant::now();
        head = store.append(id, head, batch).await?.last_seq;
        *latency = t.elapsed();
    }
    Ok((head, latencies))
}

async fn append_workload(backend: &str, root: &Path, args: &StoreBenchArgs) -> anyhow::Result<()> {
    let store = open(backend, root)?;
    let mut sessions = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let m = store.create(meta("/bench/append"), Vec::new()).await?;
        sessions.push((m.id, m.last_seq));
    }
    // The raw baseline runs interleaved with the store, one turn's block
    // of appends each in turn, so both see the same disk conditions (the
    // disk of a shared machine is noisy).
    let raw = if backend == "memory" {
        None
    } else {
        Some(RawFiles::new(&root.join("raw"), args.sessions)?)
    };
    let mut raw = raw;
    let mut engine = match backend {
        "postgres" => Some(
            EngineBaseline::postgres(
                PG_URL.get().map(String::as_str).unwrap_or_default(),
                &workload_tag(root),
                args.sessions,
                args.parallel,
            )
            .await?,
        ),
        "redis" => Some(
            EngineBaseline::redis(
                REDIS_URL.get().map(String::as_str).unwrap_or_default(),
                &workload_tag(root),
                args.sessions,
                args.parallel,
            )
            .await?,
        ),
        _ => None,
    };
    let total = args.sessions * args.turns * 2;
    let mut latencies = Vec::with_capacity(total);
    let mut store_time = Duration::ZERO;
    for turn in 0..args.turns {
        if let Some(raw) = raw.as_mut() {
            raw.turn(turn, args.message_bytes)?;
        }
        if let Some(engine) = engine.as_mut() {
            engine.turn(turn, args.message_bytes).await?;
        }
        let start = Instant::now();
        if args.parallel {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, (id, head)) in sessions.iter().enumerate() {
                let (store, id, head, bytes) =
                    (store.clone(), id.clone(), *head, args.message_bytes);
                tasks.spawn(async move {
                    let (head, lat) = one_turn(&*store, &id, head, turn, bytes).await?;
                    anyhow::Ok((i, head, lat))
                });
            }
            while let Some(done) = tasks.join_next().await {
                let (i, head, lat) = done??;
                sessions[i].1 = head;
                latencies.extend(lat);
            }
        } else {
            for (id, head) in sessions.iter_mut() {
                let (new_head, lat) =
                    one_turn(&*store, id, *head, turn, args.message_bytes).await?;
                *head = new_head;
                latencies.extend(lat);
            }
        }
        store_time += start.elapsed();
    }
    let (_, p50, p99) = stats(latencies);
    let rate = total as f64 / store_time.as_secs_f64();
    let mut params = json!({"sessions": args.sessions, "parallel": args.parallel, "turns": args.turns, "records": total, "message_bytes": args.message_bytes,
                        "p50_us": round(p50.as_secs_f64() * 1e6), "p99_us": round(p99.as_secs_f64() * 1e6)});
    if let Some(raw) = raw {
        let raw_rate = total as f64 / raw.elapsed.as_secs_f64();
        let (_, rp50, rp99) = stats(raw.latencies);
        if let Value::Object(o) = &mut params {
            o.insert("raw_records_per_s".into(), json!(round(raw_rate)));
            o.insert("slowdown_vs_raw".into(), json!(round(raw_rate / rate)));
        }
        emit(
            backend,
            "raw_write_fsync",
            raw_rate,
            "records/s",
            json!({"records": total, "p50_us": round(rp50.as_secs_f64() * 1e6), "p99_us": round(rp99.as_secs_f64() * 1e6),
                   "note": "write+fdatasync of the same record lines, one file per session, interleaved with this backend's run"}),
        );
    }
    if let Some(mut engine) = engine {
        let engine_rate = total as f64 / engine.elapsed.as_secs_f64();
        let (_, ep50, ep99) = stats(std::mem::take(&mut engine.latencies));
        if let Value::Object(o) = &mut params {
            o.insert("engine_records_per_s".into(), json!(round(engine_rate)));
            o.insert(
                "slowdown_vs_engine".into(),
                json!(round(engine_rate / rate)),
            );
        }
        let note = if backend == "postgres" {
            "one autocommit INSERT per record line into a bare (session, seq) table, interleaved with this backend's run"
        } else {
            "one RPUSH per record line on the same server, interleaved with this backend's run"
        };
        emit(
            backend,
            "engine_write",
            engine_rate,
            "records/s",
            json!({"records": total, "parallel": args.parallel, "p50_us": round(ep50.as_secs_f64() * 1e6), "p99_us": round(ep99.as_secs_f64() * 1e6), "note": note}),
        );
        engine.finish().await;
    }
    emit(backend, "append", rate, "records/s", params);
    if !matches!(backend, "memory" | "postgres" | "redis" | "dynamodb") {
        let (apparent, allocated) = disk_usage(root);
        let (raw_bytes, raw_alloc) = disk_usage(&root.join("raw"));
        emit(
            backend,
            "bytes_per_message",
            (apparent - raw_bytes) as f64 / total as f64,
            "bytes",
            json!({"allocated_bytes_per_message": round((allocated - raw_alloc) as f64 / total as f64), "messages": total}),
        );
    }
    Ok(())
}

/// The raw baseline: `write` + `fdatasync` of the same record lines, one
/// file per session.
struct RawFiles {
    files: Vec<File>,
    heads: Vec<u64>,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl RawFiles {
    fn new(dir: &Path, sessions: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let files = (0..sessions)
            .map(|s| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{s}.jsonl")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            files,
            heads: vec![1; sessions],
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
        })
    }

    fn turn(&mut self, turn: usize, bytes: usize) -> anyhow::Result<()> {
        for (s, file) in self.files.iter_mut().enumerate() {
            for role in [Role::User, Role::Assistant] {
                let batch = Record::batch(
                    self.heads[s],
                    [RecordKind::message(message(role, turn, bytes))],
                );
                self.heads[s] += 1;
                let mut line = serde_json::to_vec(&batch[0])?;
                line.push(b'\n');
                let t = Instant::now();
                file.write_all(&line)?;
                file.sync_data()?;
                let d = t.elapsed();
                self.elapsed += d;
                self.latencies.push(d);
            }
        }
        Ok(())
    }
}

async fn timed<F, Fut, T>(runs: usize, mut f: F) -> anyhow::Result<(Duration, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed());
    }
    let (min, median, _) = stats(samples);
    Ok((min, median))
}

fn emit_ms(backend: &str, figure: &str, (min, median): (Duration, Duration), extra: Value) {
    let mut extra = extra;
    if let Value::Object(o) = &mut extra {
        o.insert("min_ms".into(), json!(round(ms(min))));
    }
    emit(backend, figure, ms(median), "ms", extra);
}

async fn read_workloads(backend: &str, root: &Path, args: &StoreBenchArgs) -> anyhow::Result<()> {
    let store = open(backend, root)?;
    // (b) one long session.
    let m = store.create(meta("/bench/load"), Vec::new()).await?;
    fill(
        &*store,
        &m.id,
        m.last_seq,
        args.load_messages,
        args.message_bytes,
    )
    .await?;
    let id = m.id.clone();
    let n = args.load_messages;
    let load = timed(args.runs, || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let r = store.read_all(&id).await?;
            anyhow::ensure!(r.len() == n + 1, "loaded {} records", r.len());
            Ok(())
        }
    })
    .await?;
    emit_ms(backend, "load_all", load, json!({"messages": n}));
    if MASTER_KEY.get().is_some() {
        let tokens = crate::open_floor::Tokens::new(n, args.message_bytes)?;
        let (min, median, _) = stats(tokens.time(args.runs)?);
        emit_ms(
            backend,
            "open_floor",
            (min, median),
            json!({"messages": n, "token_bytes": tokens.mean_len()}),
        );
    }
    let view = timed(args.runs, || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let r = store.read_all(&id).await?;
            Ok(SessionView::from_records(&r)?)
        }
    })
    .await?;
    emit_ms(backend, "view_all", view, json!({"messages": n}));
    // The same through `Store::view`, which folds the records it owns
    // (no message cloned).
    let view_owned = timed(args.runs, || {
        let (store, id) = (store.clone(), id.clone());
        async move { Ok(store.view(&id).await?) }
    })
    .await?;
    emit_ms(backend, "view_owned", view_owned, json!({"messages": n}));
    let tail = timed(args.runs, || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let r = store.tail(&id, 50).await?;
            anyhow::ensure!(r.len() == 50);
            Ok(())
        }
    })
    .await?;
    emit_ms(backend, "tail", tail, json!({"messages": n, "tail": 50}));

    // (d) fork at the middle of a long-ish session.
    let f = store.create(meta("/bench/fork"), Vec::new()).await?;
    fill(
        &*store,
        &f.id,
        f.last_seq,
        args.fork_turns * 2,
        args.message_bytes,
    )
    .await?;
    let half = (args.fork_turns / 2).max(1) as u64;
    let fork = timed(args.runs.min(10), || {
        let (store, id) = (store.clone(), f.id.clone());
        async move { Ok(store.fork(&id, ForkPoint::Turn(half), None, None).await?) }
    })
    .await?;
    emit_ms(
        backend,
        "fork_middle",
        fork,
        json!({"turns": args.fork_turns, "at_turn": half}),
    );

    // (c) many sessions, list the newest 20.
    let list_root = root.join("list");
    std::fs::create_dir_all(&list_root)?;
    let store = open(backend, &list_root)?;
    let start = Instant::now();
    for i in 0..args.list_sessions {
        let mut m = meta("/bench/list");
        m.name = Some(format!("session {i}"));
        store
            .create(m, vec![RecordKind::message(message(Role::User, i, 120))])
            .await?;
    }
    let created = start.elapsed();
    emit(
        backend,
        "create",
        args.list_sessions as f64 / created.as_secs_f64(),
        "sessions/s",
        json!({"sessions": args.list_sessions}),
    );
    let query = ListQuery {
        limit: 20,
        ..Default::default()
    };
    let expected = query.limit.min(args.list_sessions);
    let list = timed(args.runs, || {
        let (store, query) = (store.clone(), query.clone());
        async move {
            let page = store.list(&query).await?;
            anyhow::ensure!(
                page.sessions.len() == expected,
                "listed {} sessions, expected {expected}",
                page.sessions.len()
            );
            Ok(())
        }
    })
    .await?;
    emit_ms(
        backend,
        "list_newest",
        list,
        json!({"sessions": args.list_sessions, "limit": 20}),
    );
    if backend != "memory" {
        drop(store);
        let open_list = timed(args.runs.min(10), || {
            let (list_root, query) = (list_root.clone(), query.clone());
            async move {
                let store = open(backend, &list_root)?;
                store.list(&query).await?;
                Ok(())
            }
        })
        .await?;
        emit_ms(
            backend,
            "open_and_list",
            open_list,
            json!({"sessions": args.list_sessions, "limit": 20}),
        );
    }
    Ok(())
}

/// Runs the store workloads, printing one JSON line per figure.
pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let backends: &[&str] = match args.backend {
        BackendArg::Fs => &["fs"],
        BackendArg::Sqlite => &["sqlite"],
        BackendArg::Memory => &["memory"],
        BackendArg::Postgres => &["postgres"],
        BackendArg::Redis => &["redis"],
        BackendArg::Dynamodb => &["dynamodb"],
        BackendArg::All => &["fs", "sqlite", "memory"],
    };
    let _ = PG_URL.set(args.postgres_url.clone());
    if args.encrypt {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()?)?;
        let _ = MASTER_KEY.set(key);
    }
    // A private redis-server (killed when `_redis` drops) unless given one.
    let mut _redis = None;
    if args.backend == BackendArg::Redis {
        let url = match &args.redis_url {
            Some(url) => url.clone(),
            None => {
                let dir = tempfile::tempdir()?;
                let server = weft_store::redis::local::LocalRedis::start(None, dir.path())
                    .map_err(|e| anyhow::anyhow!("--backend redis: {e}, or pass --redis-url"))?;
                let url = server.url();
                _redis = Some((server, dir));
                url
            }
        };
        let _ = REDIS_URL.set(url);
    }
    // A private moto server (killed when `_dynamo` drops) unless given one.
    let mut _dynamo = None;
    if args.backend == BackendArg::Dynamodb {
        let url = match &args.dynamodb_url {
            Some(url) => url.clone(),
            None => {
                let server = weft_store::dynamodb::local::LocalDynamo::start().map_err(|e| {
                    anyhow::anyhow!("--backend dynamodb: {e}, or pass --dynamodb-url")
                })?;
                let url = format!("dynamodb://127.0.0.1:{}", server.port());
                _dynamo = Some(server);
                url
            }
        };
        let _ = DYNAMO_URL.set(url);
    }
    let tmp = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let base: PathBuf = match (&args.dir, &tmp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => anyhow::bail!("no directory for the stores"),
    };
    for backend in backends {
        let root = base.join(backend);
        std::fs::create_dir_all(&root)?;
        if !args.skip_append {
            append_workload(backend, &root.join("append"), &args).await?;
        }
        read_workloads(backend, &root.join("read"), &args).await?;
    }
    let stores = std::mem::take(&mut *PG_STORES.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    for store in stores {
        if let Err(e) = store.drop_schema().await {
            eprintln!("cannot drop a bench schema: {e}");
        }
    }
    Ok(())
}

/// The master key of `--encrypt`, for [`open`].
static MASTER_KEY: std::sync::OnceLock<MasterKey> = std::sync::OnceLock::new();

/// `--postgres-url`, for [`open`].
static PG_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The redis server URL for [`open`] (`--redis-url` or the private one).
static REDIS_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The DynamoDB endpoint URL for [`open`] (`--dynamodb-url` or the private
/// moto server).
static DYNAMO_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
