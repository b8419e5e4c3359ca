//! `weft-bench server` on PostgreSQL with one or two daemons (issue 11):
//! `weft serve` processes sharing one database, which the bench creates on
//! the server of `--store-url` for the run and drops at its end.
//!
//! - `messages`: `POST /api/v1/sessions/{id}/messages` from 64 keep-alive
//!   connections (`--connections`), one session each, for `--seconds`:
//!   first with one daemon (the baseline), then — `--daemons 2` — with two:
//!   sticky (connection `i` talks to daemon `i % 2`) and round-robin (each
//!   request to the next daemon, so every session's appends alternate
//!   between the nodes). Any answer that is not 2xx is counted and
//!   reported, and the sessions' transcripts, read back from each daemon,
//!   must hold exactly the messages that were answered 201.
//! - `cross-node` (always two daemons): one session, an SSE client on
//!   daemon B's `/stream` and one on daemon A's; `--turns` turns run on A
//!   one after another (`POST /run`, echo provider); for each, the time until
//!   the frame of the turn's assistant message arrives on each stream:
//!   from just before the POST, from its response, and from the record's
//!   `ts` (when A made it, just before committing it). Each stream's record
//!   ids must be consecutive seqs: duplicates and gaps are counted.
//!
//! This module owns the database's lifetime and these two workloads; the
//! HTTP client is `http`'s; the daemon process, the request load and the
//! figures' format are `server`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::http::{Conn, SseStream};
use crate::server::{
    Daemon, LoadResult, Routing, ServerBenchArgs, ServerWorkload, line, load_on, new_session,
    open_file_limit, percentile, report,
};

/// Whether `args` ask for the cluster workloads (a store URL, several
/// daemons, or the cross-node stream) rather than the fs-store ones.
pub fn wanted(args: &ServerBenchArgs) -> bool {
    args.store_url.is_some() || args.daemons > 1 || args.workload == ServerWorkload::CrossNode
}

/// The PostgreSQL server used when `--store-url` is not given.
fn default_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` pointing at database `db` instead (its query string kept).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| i + authority_start);
    format!("{}/{db}{query}", &base[..host_end])
}

/// A database that exists for the run.
struct TempDatabase {
    name: String,
    url: String,
    client: tokio_postgres::Client,
}

impl TempDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let shown = weft_store::redact_url(admin_url);
        let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to the PostgreSQL server at {shown}: start it or pass --store-url"
                )
            })?;
        tokio::spawn(conn);
        let name = format!("weft_bench_{}", std::process::id());
        // Left over by a killed run with the same pid, if any.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .with_context(|| format!("cannot drop the leftover database {name} on {shown}"))?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create the database {name} on {shown}"))?;
        Ok(Self {
            url: with_database(admin_url, &name),
            name,
            client,
        })
    }

    async fn drop_now(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = self.client.batch_execute(&sql).await {
            eprintln!("cannot drop the bench database {}: {e}", self.name);
        }
    }
}

/// Runs the PostgreSQL workloads in a fresh database.
pub(crate) async fn run(args: ServerBenchArgs) -> anyhow::Result<()> {
    let (messages, cross) = match args.workload {
        ServerWorkload::Messages => (true, false),
        ServerWorkload::CrossNode => (false, true),
        ServerWorkload::All => (true, args.daemons > 1),
        ServerWorkload::Transcript | ServerWorkload::Sse => bail!(
            "on PostgreSQL (--store-url, --daemons 2) the workloads are `messages` and `cross-node`: pass --workload messages, cross-node or all"
        ),
    };
    if args.workload == ServerWorkload::All && !cross {
        eprintln!("cross-node needs two daemons: pass --daemons 2 to run it too");
    }
    let needed = args.connections as u64 * 2 + 256;
    if let Some(limit) = open_file_limit()
        && limit < needed
    {
        bail!(
            "this process may open {limit} files but the workloads need about {needed}: run it under `ulimit -n 65536`"
        );
    }
    let admin = args.store_url.clone().unwrap_or_else(default_url);
    let db = TempDatabase::create(&admin).await?;
    let result = run_in(&args, &db.url, messages, cross).await;
    db.drop_now().await;
    result
}

async fn run_in(
    args: &ServerBenchArgs,
    url: &str,
    messages: bool,
    cross: bool,
) -> anyhow::Result<()> {
    let env = [("WEFT_STORE__KIND", "postgres"), ("WEFT_STORE__URL", url)];
    let files = (args.connections as u64 * 2 + 256).max(65_536);
    let a = Daemon::start(&args.weft, None, files, &env).await?;
    let mut b = None;
    if messages {
        messages_workload(args, &a, &mut b, &env, files).await?;
    }
    if cross {
        let b = match b.take() {
            Some(b) => b,
            None => Daemon::start(&args.weft, None, files, &env).await?,
        };
        let outcome = cross_node(args, &a, &b).await;
        b.stop().await;
        outcome?;
    } else if let Some(b) = b {
        b.stop().await;
    }
    a.stop().await;
    Ok(())
}

/// `messages` with one daemon, then (with `--daemons 2`) two, sticky and
/// round-robin; `b` is the second daemon once started.
async fn messages_workload(
    args: &ServerBenchArgs,
    a: &Daemon,
    b: &mut Option<Daemon>,
    env: &[(&str, &str)],
    files: u64,
) -> anyhow::Result<()> {
    let n = args.connections;
    let mut phases = vec![("messages_1_daemon", Routing::Sticky)];
    if args.daemons > 1 {
        phases.push(("messages_2_daemons_sticky", Routing::Sticky));
        phases.push(("messages_2_daemons_round_robin", Routing::RoundRobin));
    }
    for (workload, routing) in phases {
        let ports = if workload == "messages_1_daemon" {
            vec![a.port]
        } else {
            if b.is_none() {
                *b = Some(Daemon::start(&args.weft, None, files, env).await?);
            }
            vec![a.port, b.as_ref().map_or(a.port, |d| d.port)]
        };
        let mut setup = Conn::open(a.port).await?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(new_session(&mut setup).await?);
        }
        let body = json!({"content": "a message appended by the load generator"}).to_string();
        let paths: Vec<String> = ids
            .iter()
            .map(|id| format!("/api/v1/sessions/{id}/messages"))
            .collect();
        let r = load_on(&ports, routing, n, args.seconds, move |i| {
            (
                "POST".into(),
                paths[i % paths.len()].clone(),
                Some(body.clone()),
            )
        })
        .await?;
        report(workload, n, &r);
        check_stored(workload, &ports, &ids, &r).await?;
    }
    Ok(())
}

/// Every daemon's transcripts of `ids` hold exactly the messages answered
/// 201 (the connections waited for each answer: none is in flight).
async fn check_stored(
    workload: &str,
    ports: &[u16],
    ids: &[String],
    r: &LoadResult,
) -> anyhow::Result<()> {
    for (d, port) in ports.iter().enumerate() {
        let mut c = Conn::open(*port).await?;
        let mut stored = 0;
        for id in ids {
            let (status, body) = c
                .json("GET", &format!("/api/v1/sessions/{id}/transcript"), None)
                .await?;
            if status != 200 {
                bail!("reading the transcript of {id} on daemon {d} answered {status}: {body}");
            }
            stored += body.as_array().map_or(0, Vec::len);
        }
        if stored != r.requests() {
            eprintln!(
                "{workload}: daemon {d} reads {stored} messages in the sessions, {} were answered 201",
                r.requests()
            );
        }
        line(
            workload,
            "stored_messages",
            stored as f64,
            "messages",
            json!({"daemon": d, "answered_201": r.requests()}),
        );
    }
    Ok(())
}

/// A stream's record ids that were not the next seq.
#[derive(Default)]
struct Integrity {
    duplicates: AtomicU64,
    gaps: AtomicU64,
    /// `error` or `shutdown` events (the stream ends after them).
    errors: AtomicU64,
}

/// The assistant message of turn `turn` reached stream `stream`.
struct Seen {
    stream: usize,
    turn: usize,
    at: Instant,
    wall: SystemTime,
    record_ts: Option<SystemTime>,
}

const MARK: &str = "bench-turn-";

/// The turn number an assistant message record carries, and its `ts`.
fn assistant_turn(data: &str) -> Option<(usize, Option<SystemTime>)> {
    let v: Value = serde_json::from_str(data).ok()?;
    let kind = &v["kind"];
    if kind["type"] != "message" || kind["data"]["role"] != "assistant" {
        return None;
    }
    let text: String = kind["data"]["content"]
        .as_array()?
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    let rest = &text[text.find(MARK)? + MARK.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let ts = v["ts"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(SystemTime::from);
    Some((digits.parse().ok()?, ts))
}

/// Reads `s` until it ends, checking its record ids and reporting
/// assistant messages to `tx`.
async fn follow(
    mut s: SseStream,
    stream: usize,
    mut last: u64,
    tx: mpsc::UnboundedSender<Seen>,
    integrity: Arc<Integrity>,
) {
    while let Ok(Some(e)) = s.next().await {
        let (at, wall) = (Instant::now(), SystemTime::now());
        if e.event == "error" || e.event == "shutdown" {
            integrity.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("stream {stream}: {} {}", e.event, e.data);
            return;
        }
        let Some(seq) = e.id.as_deref().and_then(|i| i.parse::<u64>().ok()) else {
            continue;
        };
        if seq <= last {
            integrity.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if seq > last + 1 {
            integrity.gaps.fetch_add(seq - last - 1, Ordering::Relaxed);
        }
        last = seq;
        if let Some((turn, record_ts)) = assistant_turn(&e.data) {
            let _ = tx.send(Seen {
                stream,
                turn,
                at,
                wall,
                record_ts,
            });
        }
    }
}

/// One stream's latencies, in microseconds.
#[derive(Default)]
struct Latencies {
    from_request: Vec<u64>,
    after_response: Vec<u64>,
    after_record: Vec<u64>,
    before_response: usize,
    missing: usize,
}

const WARMUP_TURNS: usize = 10;

/// The cross-node workload: turns on `a`, streams on `b` and `a`.
async fn cross_node(args: &ServerBenchArgs, a: &Daemon, b: &Daemon) -> anyhow::Result<()> {
    let mut conn = Conn::open(a.port).await?;
    let id = new_session(&mut conn).await?;
    let path = format!("/api/v1/sessions/{id}/stream");
    let names = ["cross_node", "same_node"];
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut integrity = Vec::new();
    let mut readers = Vec::new();
    for (stream, port) in [b.port, a.port].into_iter().enumerate() {
        let (s, connected) = SseStream::open(port, &path).await?;
        let head = serde_json::from_str::<Value>(&connected.data)
            .ok()
            .and_then(|v| v["lastSeq"].as_u64())
            .unwrap_or(0);
        let check = Arc::new(Integrity::default());
        integrity.push(check.clone());
        readers.push(tokio::spawn(follow(s, stream, head, tx.clone(), check)));
    }
    drop(tx);
    let mut lat = [Latencies::default(), Latencies::default()];
    let mut turn_us = Vec::new();
    let mut failed = BTreeMap::new();
    let mut stale = 0;
    for k in 0..WARMUP_TURNS + args.turns {
        let measured = k >= WARMUP_TURNS;
        let t0 = Instant::now();
        let (status, body) = conn
            .json(
                "POST",
                "/run",
                Some(json!({"message": format!("{MARK}{k}"), "session_id": id})),
            )
            .await?;
        let t1 = Instant::now();
        if status != 200 {
            if failed.is_empty() {
                eprintln!("cross_node: POST /run answered {status}: {body}");
            }
            *failed.entry(status.to_string()).or_insert(0usize) += 1;
            continue;
        }
        if measured {
            turn_us.push(t1.duration_since(t0).as_micros() as u64);
        }
        let mut got = [false, false];
        let deadline = tokio::time::Instant::from_std(t1 + Duration::from_secs(5));
        while !(got[0] && got[1]) {
            let seen = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(seen)) => seen,
                Ok(None) | Err(_) => break,
            };
            if seen.turn != k || got[seen.stream] {
                stale += 1;
                continue;
            }
            got[seen.stream] = true;
            if !measured {
                continue;
            }
            let l = &mut lat[seen.stream];
            l.from_request
                .push(seen.at.duration_since(t0).as_micros() as u64);
            if seen.at < t1 {
                l.before_response += 1;
            }
            l.after_response
                .push(seen.at.saturating_duration_since(t1).as_micros() as u64);
            if let Some(ts) = seen.record_ts {
                let d = seen.wall.duration_since(ts).unwrap_or_default();
                l.after_record.push(d.as_micros() as u64);
            }
        }
        for (stream, got) in got.iter().enumerate() {
            if !got && measured {
                lat[stream].missing += 1;
                eprintln!(
                    "{}: no assistant message of turn {k} within 5 s",
                    names[stream]
                );
            }
        }
    }
    for r in readers {
        r.abort();
    }
    turn_us.sort_unstable();
    let extra = json!({"turns": args.turns, "failed": failed, "stale_frames": stale});
    line(
        "cross_node_turn",
        "p50_turn",
        percentile(&turn_us, 50.0),
        "ms",
        extra.clone(),
    );
    line(
        "cross_node_turn",
        "p99_turn",
        percentile(&turn_us, 99.0),
        "ms",
        extra,
    );
    for (stream, l) in lat.iter_mut().enumerate() {
        let check = &integrity[stream];
        let extra = json!({
            "turns": args.turns,
            "frames": l.from_request.len(),
            "missing": l.missing,
            "before_response": l.before_response,
            "duplicates": check.duplicates.load(Ordering::Relaxed),
            "gaps": check.gaps.load(Ordering::Relaxed),
            "stream_errors": check.errors.load(Ordering::Relaxed),
        });
        for (name, v) in [
            ("from_request", &mut l.from_request),
            ("after_response", &mut l.after_response),
            ("after_record_ts", &mut l.after_record),
        ] {
            v.sort_unstable();
            for p in [50.0, 99.0] {
                line(
                    names[stream],
                    &format!("p{p}_{name}"),
                    percentile(v, p),
                    "ms",
                    extra.clone(),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_the_database_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn assistant_turn_reads_the_marker_of_assistant_messages_only() {
        let record = |role: &str| {
            json!({"v": 1, "seq": 7, "ts": "2026-01-01T00:00:00Z", "kind": {"type": "message",
                "data": {"role": role, "content": [{"type": "text", "text": "bench-turn-42"}]}}})
            .to_string()
        };
        let (turn, ts) = assistant_turn(&record("assistant")).expect("an assistant message");
        assert_eq!(turn, 42);
        assert!(ts.is_some());
        assert!(assistant_turn(&record("user")).is_none());
        assert!(assistant_turn("not json").is_none());
    }
}
