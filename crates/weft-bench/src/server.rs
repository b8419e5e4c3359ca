//! `weft-bench server`: the daemon's workloads (issue 5), against a real
//! `weft serve` process on 127.0.0.1 that the bench starts itself (fs store
//! in a temporary `WEFT_HOME`, provider-scripted in echo mode).
//!
//! - `transcript`: `GET /api/v1/sessions/{id}/transcript` of a 50-message
//!   session from `--connections` keep-alive connections for `--seconds`:
//!   requests/s, p50 and p99 latency.
//! - `messages`: `POST /api/v1/sessions/{id}/messages` the same way, all
//!   connections on one session (`messages_one_session`: appends to one log
//!   are serialised, each durable) and one session per connection
//!   (`messages_per_connection`).
//! - `sse`: the server's RSS (`VmRSS` of `/proc/<pid>/status`) idle, then
//!   with `--sse-clients` idle SSE streams open on one session, and how long
//!   a turn takes with all of them attached.
//! - With `--store-url`, `--daemons 2` or `--workload cross-node`: one or
//!   two daemons on a PostgreSQL database (`messages` across 64 sessions,
//!   and `cross-node` stream latency), see `crate::cluster`.
//!
//! The HTTP client is the bench's own minimal HTTP/1.1 one (`crate::http`),
//! so the figures measure the server, not a client library. The server gets a
//! raised file limit through `ulimit -n` in the shell that starts it; the
//! bench itself needs one too (`ulimit -n 65536` before running it, see
//! `BENCHMARKS.md`); it says so when it is too low. Every figure is one JSON
//! line: `{"bench":"server","workload":…,"figure":…,"value":…,"unit":…}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::http::{Conn, SseStream};

/// Which workloads to run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerWorkload {
    /// `GET /transcript` of a 50-message session.
    Transcript,
    /// `POST /messages`.
    Messages,
    /// RSS with idle SSE clients.
    Sse,
    /// Several daemons on PostgreSQL: how long a turn committed on one
    /// takes to reach an SSE client of another (see `cluster`).
    CrossNode,
    /// All of them.
    All,
}

/// Flags of `weft-bench server`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerBenchArgs {
    /// The `weft` binary to start (`weft serve`).
    #[arg(long, default_value = "target/release/weft")]
    pub weft: PathBuf,
    /// The workload(s).
    #[arg(long, value_enum, default_value = "all")]
    pub workload: ServerWorkload,
    /// Concurrent keep-alive connections for the request workloads.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long each request workload runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Messages in the transcript session.
    #[arg(long, default_value_t = 50)]
    pub messages: usize,
    /// Idle SSE clients for the RSS figure.
    #[arg(long, default_value_t = 10_000)]
    pub sse_clients: usize,
    /// The port (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Run the daemons on this PostgreSQL server (`weft serve --store
    /// postgres`), in a database the bench creates and drops; the default,
    /// when `--daemons 2` or `--workload cross-node` asks for PostgreSQL, is
    /// `WEFT_TEST_POSTGRES_URL` or `postgres://postgres@127.0.0.1:5432/postgres`.
    #[arg(long, value_name = "URL")]
    pub store_url: Option<String>,
    /// Daemons on the shared PostgreSQL store (1 or 2; 2 also measures 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub daemons: u8,
    /// Turns of the cross-node workload.
    #[arg(long, default_value_t = 200)]
    pub turns: usize,
}

const ECHO_PLAN: &str = r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
 "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}]}"#;

pub(crate) fn line(workload: &str, figure: &str, value: f64, unit: &str, extra: Value) {
    let mut out = json!({"bench": "server", "workload": workload, "figure": figure, "value": (value * 1000.0).round() / 1000.0, "unit": unit});
    if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    println!("{out}");
}

/// The soft limit on open files of this process.
pub(crate) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let row = limits.lines().find(|l| l.starts_with("Max open files"))?;
    row.split_whitespace().nth(3)?.parse().ok()
}

/// A number field of `/proc/<pid>/status` (`VmRSS` is in KiB).
fn proc_status(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// `VmRSS` of `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    proc_status(pid, "VmRSS")
}

/// The `weft serve` process under test.
pub(crate) struct Daemon {
    child: tokio::process::Child,
    pid: u32,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `weft serve` (with `env` added to its environment, e.g. the
    /// store's `WEFT_STORE__KIND`/`WEFT_STORE__URL`: a URL's password stays
    /// off the process list) and waits for `/health`.
    pub(crate) async fn start(
        weft: &Path,
        port: Option<u16>,
        files: u64,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        if !weft.is_file() {
            bail!(
                "{} does not exist: build it with `cargo build --release -p weft-cli` or pass --weft PATH",
                weft.display()
            );
        }
        // The server runs in its own project directory: a relative path
        // must not be resolved there.
        let weft = std::fs::canonicalize(weft)
            .with_context(|| format!("cannot resolve {}", weft.display()))?;
        let dir = tempfile::tempdir()?;
        let home = dir.path().join("home");
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project)?;
        let plan = project.join("plan.json");
        std::fs::write(&plan, ECHO_PLAN)?;
        let port = match port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        };
        // The shell raises the server's file limit, then becomes the server.
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n {files} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$@\""
            ))
            .arg("sh")
            .arg(&weft)
            .args(["serve", "--port", &port.to_string(), "--mount-plan"])
            .arg(&plan)
            // Every client of the workload is served at once (the default
            // cap, 4096, would leave SSE clients waiting to be accepted).
            .args(["--max-connections", &files.to_string()])
            .current_dir(&project)
            .env("WEFT_HOME", &home)
            .env_remove("WEFT_SERVER__TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start weft serve")?;
        let pid = child.id().context("weft serve exited at once")?;
        let daemon = Self {
            child,
            pid,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Conn::open(port).await
                && let Ok((200, _)) = c.request("GET", "/health", None).await
            {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                bail!("weft serve did not answer /health within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
    }
}

/// Creates and starts a session.
pub(crate) async fn new_session(c: &mut Conn) -> anyhow::Result<String> {
    let (status, body) = c.json("POST", "/api/v1/sessions/", Some(json!({}))).await?;
    if status != 201 {
        bail!("creating a session answered {status}: {body}");
    }
    let id = body["sessionId"]
        .as_str()
        .context("no sessionId")?
        .to_string();
    let (status, body) = c
        .json("POST", &format!("/api/v1/sessions/{id}/start"), None)
        .await?;
    if status != 204 {
        bail!("starting a session answered {status}: {body}");
    }
    Ok(id)
}

/// What a request workload measured.
pub(crate) struct LoadResult {
    requests: usize,
    errors: usize,
    /// Answers that were not 2xx, by status (0: the connection failed).
    statuses: BTreeMap<u16, usize>,
    /// The first of them, with its body.
    first_error: Option<String>,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl LoadResult {
    /// Successful requests.
    pub(crate) fn requests(&self) -> usize {
        self.requests
    }
}

/// Which daemon each request of a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routing {
    /// Connection `i` always talks to daemon `i % N`.
    Sticky,
    /// Each request goes to the next daemon in turn (connection `i`
    /// starts at daemon `i % N`).
    RoundRobin,
}

/// The `p`th percentile of sorted microseconds, in milliseconds.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// `connections` keep-alive connections send `req(i)` for `seconds`.
async fn load<F>(port: u16, connections: usize, seconds: u64, req: F) -> anyhow::Result<LoadResult>
where
    F: Fn(usize) -> (String, String, Option<String>) + Send + Sync + 'static,
{
    load_on(&[port], Routing::Sticky, connections, seconds, req).await
}

/// [`load`] across the daemons on `ports`, routed by `routing`.
pub(crate) async fn load_on<F>(
    ports: &[u16],
    routing: Routing,
    connections: usize,
    seconds: u64,
    req: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(usize) -> (String, String, Option<String>) + Send + Sync + 'static,
{
    if ports.is_empty() {
        bail!("no daemon to send requests to");
    }
    let req = Arc::new(req);
    let stop = Arc::new(AtomicBool::new(false));
    let mut all = Vec::with_capacity(connections);
    for i in 0..connections {
        let n = match routing {
            Routing::Sticky => 1,
            Routing::RoundRobin => ports.len(),
        };
        let mut conns = Vec::with_capacity(n);
        for j in 0..n {
            conns.push(Conn::open(ports[(i + j) % ports.len()]).await?);
        }
        all.push(conns);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut conns) in all.into_iter().enumerate() {
        let req = req.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (method, path, body) = req(i);
            let mut lat = Vec::new();
            let mut statuses = BTreeMap::new();
            let mut first_error = None;
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = conns.len();
                let conn = &mut conns[k % n];
                k += 1;
                let t = Instant::now();
                match conn.request(&method, &path, body.as_deref()).await {
                    Ok((s, _)) if (200..300).contains(&s) => {
                        lat.push(t.elapsed().as_micros() as u64)
                    }
                    Ok((s, b)) => {
                        *statuses.entry(s).or_insert(0) += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{method} {path}: {s} {}", String::from_utf8_lossy(&b))
                        });
                    }
                    Err(e) => {
                        *statuses.entry(0).or_insert(0) += 1;
                        first_error.get_or_insert_with(|| format!("{method} {path}: {e:#}"));
                        break;
                    }
                }
            }
            (lat, statuses, first_error)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut first_error = None;
    for t in tasks {
        let (l, s, e) = t.await?;
        latencies_us.extend(l);
        for (status, n) in s {
            *statuses.entry(status).or_insert(0) += n;
        }
        first_error = first_error.or(e);
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Ok(LoadResult {
        requests: latencies_us.len(),
        errors: statuses.values().sum(),
        statuses,
        first_error,
        elapsed,
        latencies_us,
    })
}

/// Prints a request workload's figures (and, on stderr, its first error).
pub(crate) fn report(workload: &str, connections: usize, r: &LoadResult) {
    let mut extra = json!({"connections": connections, "requests": r.requests, "errors": r.errors, "seconds": r.elapsed.as_secs_f64()});
    if !r.statuses.is_empty() {
        extra["non_2xx"] = json!(
            r.statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect::<BTreeMap<_, _>>()
        );
    }
    if let Some(e) = &r.first_error {
        eprintln!("{workload}: {} requests failed, the first: {e}", r.errors);
    }
    line(
        workload,
        "requests_per_sec",
        r.requests as f64 / r.elapsed.as_secs_f64(),
        "req/s",
        extra.clone(),
    );
    line(
        workload,
        "p50_latency",
        percentile(&r.latencies_us, 50.0),
        "ms",
        extra.clone(),
    );
    line(
        workload,
        "p99_latency",
        percentile(&r.latencies_us, 99.0),
        "ms",
        extra,
    );
}

/// Runs the server workloads.
pub async fn run(args: ServerBenchArgs) -> anyhow::Result<()> {
    let want = |w: ServerWorkload| args.workload == w || args.workload == ServerWorkload::All;
    let needed = if want(ServerWorkload::Sse) {
        args.sse_clients as u64 + args.connections as u64 + 256
    } else {
        args.connections as u64 * 2 + 256
    };
    if let Some(limit) = open_file_limit()
        && limit < needed
    {
        bail!(
            "this process may open {limit} files but the workloads need about {needed}: run it under `ulimit -n {}` (or pass a smaller --sse-clients)",
            needed.max(65_536)
        );
    }
    let daemon = Daemon::start(&args.weft, args.port, needed.max(65_536), &[]).await?;
    let port = daemon.port;
    let mut setup = Conn::open(port).await?;

    // A session with `--messages` messages.
    let transcript_id = new_session(&mut setup).await?;
    for i in 0..args.messages {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let body = json!({"role": role, "content": format!("message {i}: {}", "lorem ipsum dolor sit amet ".repeat(8))});
        let (status, b) = setup
            .json(
                "POST",
                &format!("/api/v1/sessions/{transcript_id}/messages"),
                Some(body),
            )
            .await?;
        if status != 201 {
            bail!("appending a message answered {status}: {b}");
        }
    }

    if want(ServerWorkload::Transcript) {
        let path = format!("/api/v1/sessions/{transcript_id}/transcript");
        let r = load(port, args.connections, args.seconds, move |_| {
            ("GET".into(), path.clone(), None)
        })
        .await?;
        report("transcript_50", args.connections, &r);
    }

    if want(ServerWorkload::Messages) {
        let one = new_session(&mut setup).await?;
        let body = json!({"content": "a message appended by the load generator"}).to_string();
        let b = body.clone();
        let r = load(port, args.connections, args.seconds, move |_| {
            (
                "POST".into(),
                format!("/api/v1/sessions/{one}/messages"),
                Some(b.clone()),
            )
        })
        .await?;
        report("messages_one_session", args.connections, &r);
        let mut ids = Vec::new();
        for _ in 0..args.connections {
            ids.push(new_session(&mut setup).await?);
        }
        let r = load(port, args.connections, args.seconds, move |i| {
            (
                "POST".into(),
                format!("/api/v1/sessions/{}/messages", ids[i % ids.len()]),
                Some(body.clone()),
            )
        })
        .await?;
        report("messages_per_connection", args.connections, &r);
    }

    if want(ServerWorkload::Sse) {
        sse(&daemon, &transcript_id, args.sse_clients).await?;
    }
    drop(setup);
    daemon.stop().await;
    Ok(())
}

async fn open_sse(port: u16, path: &str) -> anyhow::Result<SseStream> {
    Ok(SseStream::open(port, path).await?.0)
}

async fn sse(daemon: &Daemon, id: &str, clients: usize) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(12)).await;
    let idle = rss_kib(daemon.pid)?;
    line(
        "sse_idle",
        "rss_no_clients",
        idle as f64 / 1024.0,
        "MiB",
        json!({}),
    );
    let path = format!("/api/v1/sessions/{id}/stream");
    let started = Instant::now();
    let mut open = Vec::with_capacity(clients);
    let batch = 250;
    let mut i = 0;
    while i < clients {
        let n = batch.min(clients - i);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let path = path.clone();
            let port = daemon.port;
            set.spawn(async move { open_sse(port, &path).await });
        }
        while let Some(r) = set.join_next().await {
            open.push(r??);
        }
        i += n;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let the store's blocking threads used while connecting exit (tokio
    // keeps idle ones for 10 s), so the figure is the clients' cost.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let with = rss_kib(daemon.pid)?;
    let threads = proc_status(daemon.pid, "Threads").unwrap_or(0);
    let extra =
        json!({"clients": clients, "connect_seconds": connect_secs, "server_threads": threads});
    line(
        "sse_idle",
        "rss_with_clients",
        with as f64 / 1024.0,
        "MiB",
        extra.clone(),
    );
    line(
        "sse_idle",
        "rss_per_client",
        (with.saturating_sub(idle)) as f64 * 1024.0 / clients.max(1) as f64,
        "bytes",
        extra.clone(),
    );
    // A turn with every stream attached: the events fan out to all of them.
    let t = Instant::now();
    // A fresh connection: the server closes one left idle through the
    // waits above.
    let mut c = Conn::open(daemon.port).await?;
    let (status, body) = c
        .json(
            "POST",
            "/run",
            Some(json!({"message": "fan out", "session_id": id})),
        )
        .await?;
    if status != 200 {
        bail!("the turn answered {status}: {body}");
    }
    line(
        "sse_idle",
        "turn_with_clients",
        t.elapsed().as_secs_f64() * 1000.0,
        "ms",
        extra,
    );
    drop(open);
    Ok(())
}
