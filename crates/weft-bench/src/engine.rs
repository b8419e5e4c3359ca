//! The engine's own durable-write rate, as the baseline of a network
//! backend's `append` figure (`weft-bench store --backend postgres|redis`):
//! the same record lines written by the server as plainly as it can take
//! them, in the same run, interleaved turn by turn with the store's own
//! appends (the machine is noisy; both see the same conditions).
//!
//! - postgres: one autocommit `INSERT` (prepared) per record into a bare table keyed
//!   `(session, seq)` (each commit waits for its WAL flush, as weft's
//!   appends do), on as many connections as weft's pool would use;
//! - redis: one `RPUSH` per record (the server's `appendfsync` setting
//!   decides when it is on disk, as for weft's appends).
//!
//! With `--parallel`, a turn's records for different sessions are written
//! concurrently, like the store's; else one after another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use weft_core::{BranchId, Message, Record, RecordKind, Role};

/// How many connections the baseline uses at most (weft's postgres pool
/// size).
const MAX_CONNECTIONS: usize = weft_store::postgres::POOL_SIZE;

enum Conns {
    Postgres {
        /// Each connection with the baseline's `INSERT` prepared on it.
        clients: Vec<(Arc<tokio_postgres::Client>, tokio_postgres::Statement)>,
        admin: Arc<tokio_postgres::Client>,
        schema: String,
    },
    Redis {
        conn: redis::aio::MultiplexedConnection,
        prefix: String,
    },
}

/// The engine baseline of one run. See the module docs.
pub struct EngineBaseline {
    conns: Conns,
    heads: Vec<u64>,
    parallel: bool,
    /// The wall time of the baseline's turns.
    pub elapsed: Duration,
    /// Each write's latency.
    pub latencies: Vec<Duration>,
}

async fn pg_client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to PostgreSQL for the engine baseline")?;
    tokio::spawn(conn);
    Ok(client)
}

impl EngineBaseline {
    /// A PostgreSQL baseline in its own schema (`weft_bench_raw_<tag>`,
    /// dropped by [`EngineBaseline::finish`]).
    pub async fn postgres(
        url: &str,
        tag: &str,
        sessions: usize,
        parallel: bool,
    ) -> anyhow::Result<Self> {
        let schema = format!("weft_bench_raw_{tag}");
        let admin = pg_client(url).await?;
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {schema}.raw (session int, seq bigint, line text, PRIMARY KEY (session, seq))"
            ))
            .await
            .context("cannot create the engine baseline's table")?;
        let n = if parallel {
            sessions.clamp(1, MAX_CONNECTIONS)
        } else {
            1
        };
        let mut clients = Vec::with_capacity(n);
        let sql = format!("INSERT INTO {schema}.raw (session, seq, line) VALUES ($1, $2, $3)");
        for _ in 0..n {
            let client = pg_client(url).await?;
            // Prepared once, as weft's store prepares its statements: each
            // write is then one round trip.
            let insert = client
                .prepare(&sql)
                .await
                .context("cannot prepare the engine baseline's INSERT")?;
            clients.push((Arc::new(client), insert));
        }
        Ok(Self::new(
            Conns::Postgres {
                clients,
                admin: Arc::new(admin),
                schema,
            },
            sessions,
            parallel,
        ))
    }

    /// A Redis baseline under the key prefix `weft-bench-raw:<tag>:`
    /// (deleted by [`EngineBaseline::finish`]).
    pub async fn redis(
        url: &str,
        tag: &str,
        sessions: usize,
        parallel: bool,
    ) -> anyhow::Result<Self> {
        let base = url.split('?').next().unwrap_or(url);
        let conn = redis::Client::open(base)
            .context("invalid Redis URL for the engine baseline")?
            .get_multiplexed_async_connection()
            .await
            .context("cannot connect to Redis for the engine baseline")?;
        Ok(Self::new(
            Conns::Redis {
                conn,
                prefix: format!("weft-bench-raw:{tag}:"),
            },
            sessions,
            parallel,
        ))
    }

    fn new(conns: Conns, sessions: usize, parallel: bool) -> Self {
        Self {
            conns,
            heads: vec![1; sessions],
            parallel,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
        }
    }

    /// One turn: a user and an assistant record per session, each its own
    /// durable write.
    pub async fn turn(&mut self, turn: usize, bytes: usize) -> anyhow::Result<()> {
        let mut jobs = Vec::with_capacity(self.heads.len());
        for (session, head) in self.heads.iter_mut().enumerate() {
            let mut lines = Vec::with_capacity(2);
            for role in [Role::User, Role::Assistant] {
                let batch = Record::batch(*head, [RecordKind::message(message(role, turn, bytes))]);
                *head += 1;
                lines.push((*head as i64, serde_json::to_string(&batch[0])?));
            }
            jobs.push((session, lines));
        }
        let start = Instant::now();
        if self.parallel {
            let mut tasks = tokio::task::JoinSet::new();
            for (session, lines) in jobs {
                let writer = self.writer(session);
                tasks.spawn(async move { writer.write(session, lines).await });
            }
            while let Some(done) = tasks.join_next().await {
                self.latencies.extend(done??);
            }
        } else {
            for (session, lines) in jobs {
                let lat = self.writer(session).write(session, lines).await?;
                self.latencies.extend(lat);
            }
        }
        self.elapsed += start.elapsed();
        Ok(())
    }

    fn writer(&self, session: usize) -> Writer {
        match &self.conns {
            Conns::Postgres { clients, .. } => {
                let (client, insert) = &clients[session % clients.len()];
                Writer::Postgres(client.clone(), insert.clone())
            }
            Conns::Redis { conn, prefix } => Writer::Redis(conn.clone(), prefix.clone()),
        }
    }

    /// Removes what the baseline wrote.
    pub async fn finish(self) {
        let result: anyhow::Result<()> = match self.conns {
            Conns::Postgres { admin, schema, .. } => admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .map_err(Into::into),
            Conns::Redis { mut conn, prefix } => {
                let mut result = Ok(());
                for session in 0..self.heads.len() {
                    let r: redis::RedisResult<()> = redis::cmd("DEL")
                        .arg(format!("{prefix}{session}"))
                        .query_async(&mut conn)
                        .await;
                    if let Err(e) = r {
                        result = Err(e.into());
                    }
                }
                result
            }
        };
        if let Err(e) = result {
            eprintln!("cannot remove the engine baseline's data: {e}");
        }
    }
}

/// Writes one session's records.
enum Writer {
    Postgres(Arc<tokio_postgres::Client>, tokio_postgres::Statement),
    Redis(redis::aio::MultiplexedConnection, String),
}

impl Writer {
    async fn write(
        mut self,
        session: usize,
        lines: Vec<(i64, String)>,
    ) -> anyhow::Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(lines.len());
        for (seq, line) in lines {
            let t = Instant::now();
            match &mut self {
                Writer::Postgres(client, insert) => {
                    client
                        .execute(&*insert, &[&(session as i32), &seq, &line])
                        .await
                        .context("engine baseline INSERT")?;
                }
                Writer::Redis(conn, prefix) => {
                    let _: i64 = redis::cmd("RPUSH")
                        .arg(format!("{prefix}{session}"))
                        .arg(line)
                        .query_async(conn)
                        .await
                        .context("engine baseline RPUSH")?;
                }
            }
            latencies.push(t.elapsed());
        }
        Ok(latencies)
    }
}

/// A message of about `bytes` bytes of text, varied by `i`.
pub(crate) fn message(role: Role, i: usize, bytes: usize) -> Message {
    const WORDS: &[&str] = &[
        "session", "kernel", "durable", "append", "the", "quick", "brown", "fox", "log", "branch",
        "tool", "result", "weft", "store", "and", "of", "a", "to", "fork", "index",
    ];
    let mut text = format!("message {i}:");
    let mut k = i;
    while text.len() < bytes {
        k = k.wrapping_mul(2_654_435_761).wrapping_add(7);
        text.push(' ');
        text.push_str(WORDS[(k >> 7) % WORDS.len()]);
    }
    let mut m = Message::text(BranchId::main(), role, text);
    if role == Role::Assistant {
        m.model = Some("bench-model".into());
    }
    m
}
