//! [`PostgresStore`]: every session in one PostgreSQL database (or one
//! schema of it), for several weft processes and nodes sharing a store.
//!
//! # What it owns
//!
//! The tables (created by the numbered migrations in `schema`, recorded in
//! `weft_schema_version`):
//!
//! - `sessions(id PRIMARY KEY, project, updated_us, listed_s, status,
//!   parent_id, name, profile, last_seq, meta, default_branch, fold_…)`:
//!   the folded [`SessionMeta`] as JSON plus the columns `list` filters
//!   and pages on (keyset paging on `(listed_s, updated_us, id)`;
//!   `listed_s`, `updated_us` in whole seconds, is what the indexes hold,
//!   overall and per project, so most appends update the row in place
//!   without touching an index). The `fold_…` columns hold what guarded
//!   appends changed since `meta` was last written, merged into it when
//!   the row is read (see `guarded`).
//! - `records(session_id, seq, kind, record, PRIMARY KEY(session_id,
//!   seq))`: the log, one record per row as its `crate::codec` JSON line
//!   (so new optional `Record` fields pass through).
//! - `search_queue(session_id, seq)` and `search_docs(session_id,
//!   seq, text)`: messages queued by the append, their searchable text
//!   moved into the `pg_trgm` GIN index of `search_docs` by searches and a
//!   background task (see `search`).
//! - `shared_state(namespace PRIMARY KEY, state)`, `events(n, session_id,
//!   event)` (the newest [`PG_EVENTS_CAP`] per session are kept, trimmed
//!   in steps; written without waiting for the WAL flush: the event log is
//!   diagnostic, records are what is durable) and
//!   `turn_locks(session_id, branch, holder, token, expires_at)`.
//!
//! # Guarantees
//!
//! An append is one statement, hence one implicit transaction and one
//! round trip (see `log`): it locks the session row (`SELECT … FOR
//! UPDATE`), checks `expected_seq` against `last_seq` (a
//! [`StoreError::Conflict`] naming the actual head otherwise), inserts the
//! batch and updates the session row; the `(session_id, seq)` primary key
//! backs this up (a unique violation is a conflict too). Its commit is
//! durable before `append` returns (the server's `synchronous_commit`).
//! Shared state is read `FOR UPDATE`, changed and written in one
//! transaction, so concurrent writers never lose an update. Turn locks are
//! leases: a row with a holder, a fencing token and an expiry that a task
//! renews while the lock is held ([`TURN_LEASE`]); a holder that dies stops
//! renewing and its lease expires (then reported as not live: an
//! interrupted turn). The append fences turns: a batch naming a turn is
//! written only while that turn holds its branch's unexpired lease (else
//! [`StoreError::LeaseLost`], nothing written).
//!
//! An append that leaves its check to the store
//! ([`Store::append_guarded`](weft_core::store::Store::append_guarded), a
//! batch of messages) is one statement too, numbered and folded where the
//! row is (see `guarded`): a process that did not write the session last
//! does not read it first.
//!
//! Appends and kernel events are single statements, so they share
//! connections ("lanes", half of the pool, see `lanes`): many are in
//! flight on one connection at once instead of each waiting for a
//! connection of its own.
//!
//! Processes sharing the database see each other's kernel events and
//! commits through `LISTEN`/`NOTIFY` ([`Store::live`](weft_core::store::Store::live), see `live`).
//!
//! # What it must not know about
//!
//! Turns, providers, the CLI or the server: it stores what the
//! [`Store`](weft_core::store::Store) contract describes. TLS is not
//! supported (loopback / private networks: `NoTls`). Credentials come only
//! from the URL and never appear in errors or logs ([`redact_url`]).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use weft_core::SessionId;
use weft_core::store::StoreError;

mod guarded;
mod lanes;
mod lease;
mod live;
mod log;
mod query;
mod schema;
mod search;
mod store_impl;
mod url_options;

pub use schema::{MIGRATIONS, SCHEMA_VERSION};
pub use search::{INDEX_BATCH, INDEX_PERIOD};
pub use url_options::MAX_POOL_SIZE;

/// How many kernel events the postgres store keeps per session.
pub const PG_EVENTS_CAP: i64 = 10_000;

/// How long a turn lock's lease lasts without renewal; the holder renews it
/// every third of that.
pub const TURN_LEASE: Duration = Duration::from_secs(15);

/// The backend name in errors.
const BACKEND: &str = "postgres";

/// Why the postgres store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The URL does not parse (shown without its password).
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    BadUrl {
        /// The URL, password removed.
        url: String,
        /// Why.
        reason: String,
    },
    /// The schema name is not a plain identifier.
    #[error("invalid PostgreSQL schema name {0:?}: use letters, digits and underscores")]
    BadSchema(String),
    /// The database was written by a newer weft.
    #[error(
        "the PostgreSQL database {url} has weft schema version {found}, newer than this weft knows ({known}): upgrade weft, or point --store-url at another database"
    )]
    SchemaTooNew {
        /// The URL, password removed.
        url: String,
        /// The version recorded in the database.
        found: i32,
        /// The newest version this build knows.
        known: i32,
    },
    /// No connection could be made.
    #[error(
        "cannot connect to PostgreSQL at {url}: {reason} (is the server running and the URL right?)"
    )]
    Connect {
        /// The URL, password removed.
        url: String,
        /// What failed.
        reason: String,
    },
}

impl From<PostgresError> for StoreError {
    fn from(e: PostgresError) -> Self {
        StoreError::Backend {
            backend: BACKEND,
            message: e.to_string(),
        }
    }
}

pub use crate::redact_url;

/// Removes a password from an error message that might quote one.
fn scrub(message: String, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => message.replace(p, "***"),
        _ => message,
    }
}

/// A PostgreSQL error as a [`StoreError`] (server errors with their
/// SQLSTATE; never the password).
fn db(e: tokio_postgres::Error) -> StoreError {
    let message = match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    };
    StoreError::Backend {
        backend: BACKEND,
        message,
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend {
        backend: BACKEND,
        message: format!("cannot encode: {e}"),
    })
}

fn corrupt(location: String, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        location,
        detail: e.to_string(),
    }
}

fn not_found(id: &SessionId) -> StoreError {
    StoreError::NotFound(id.to_string())
}

/// Whether `e` is a unique-key violation (SQLSTATE 23505).
fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// The PostgreSQL store. See the module docs.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Shared connections for one-statement writes (see `lanes`).
    lanes: lanes::Lanes,
    /// The URL without its password.
    url: String,
    password: Option<String>,
    /// The schema the store lives in (created by the migrations).
    schema: Option<String>,
    /// Set once the migrations have run (on first use).
    ready: OnceCell<()>,
    /// How long a turn lock's lease lasts without renewal.
    lease: Duration,
    /// Session metadata as this process last wrote or read it (see
    /// `log`): a hint for the one-statement append, checked by the server.
    meta_cache: crate::meta_cache::MetaCache,
    /// `LISTEN`/`NOTIFY` (see `live`).
    live: Arc<live::PgLive>,
    /// Moves queued search text into the index in the background (see
    /// `search`).
    indexer: search::Indexer,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.inner.url)
            .finish()
    }
}

/// How many connections the pool keeps at most, unless the URL says
/// otherwise (`?pool_size=`).
pub const POOL_SIZE: usize = 16;

fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl PostgresStore {
    /// A store on the database at `url` (`postgres://user:pass@host:port/db`,
    /// optionally with weft's `?lease_ms=<ms>` (how long a turn lock's lease
    /// lasts without renewal, default [`TURN_LEASE`]) and `?pool_size=<n>`
    /// (connections kept at most, default [`POOL_SIZE`])), in `schema` when given (created if missing; else the connection's
    /// default search path, normally `public`). Makes no connection yet:
    /// the first operation connects and applies the migrations (see
    /// [`PostgresStore::open`] to do that now).
    pub fn connect_lazy(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let (url, options) = url_options::take_url_options(url)?;
        let url = url.as_str();
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| PostgresError::BadUrl {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?;
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        if let Some(s) = schema {
            if !valid_schema(s) {
                return Err(PostgresError::BadSchema(s.to_string()).into());
            }
            // Objects are created in (and found in) `schema`; `public`
            // stays on the path for extensions such as pg_trgm.
            config.options(format!("-c search_path={s},public"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A URL's own `application_name` (one per daemon, say) is kept.
        if config.get_application_name().is_none() {
            config.application_name("weft");
        }
        let live = live::PgLive::new(config.clone(), shown.clone(), password.clone(), schema);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .build()
            .map_err(|e| PostgresError::Connect {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                lanes: lanes::Lanes::for_pool(options.pool_size),
                url: shown,
                password,
                schema: schema.map(str::to_string),
                ready: OnceCell::new(),
                lease: options.lease,
                meta_cache: crate::meta_cache::MetaCache::default(),
                live: Arc::new(live),
                indexer: search::Indexer::default(),
            }),
        })
    }

    /// Opens the store: connects and applies the migrations (refusing a
    /// database whose schema is newer than this build knows).
    pub async fn open(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(url, schema)?;
        store.ready().await?;
        Ok(store)
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// A pooled connection, the schema ready.
    async fn conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.ready().await?;
        self.raw_conn().await
    }

    /// A connection for single statements (never a transaction): the
    /// next shared lane, or a pooled connection when the store has no
    /// lanes (see `lanes`).
    async fn lane(&self) -> Result<Arc<deadpool_postgres::Object>, StoreError> {
        let lanes = &self.inner.lanes;
        if lanes.len() == 0 {
            return Ok(Arc::new(self.conn().await?));
        }
        match lanes.take_turn() {
            Ok(conn) => Ok(conn),
            Err(slot) => {
                let conn = self.conn().await?;
                Ok(lanes.fill(slot, conn))
            }
        }
    }

    async fn raw_conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(|e| {
            let reason = match e {
                deadpool_postgres::PoolError::Backend(e) => match e.as_db_error() {
                    Some(d) => d.message().to_string(),
                    None => e.to_string(),
                },
                other => other.to_string(),
            };
            PostgresError::Connect {
                url: self.inner.url.clone(),
                reason: scrub(reason, self.inner.password.as_deref()),
            }
            .into()
        })
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.inner
            .ready
            .get_or_try_init(|| async {
                let mut conn = self.raw_conn().await?;
                schema::migrate(&mut conn, self.inner.schema.as_deref(), &self.inner.url).await
            })
            .await
            .map(|_| ())
    }
}

impl PostgresStore {
    /// Drops the store's schema and everything in it (for tests and
    /// throw-away stores). Refused for a store opened without a schema.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let Some(schema) = self.inner.schema.as_deref() else {
            return Err(StoreError::Invalid(
                "this postgres store has no schema of its own to drop".into(),
            ));
        };
        let conn = self.raw_conn().await?;
        // `schema` is a plain identifier (checked by `connect_lazy`).
        conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db?x=@"), "postgres://h/db?x=@");
        assert_eq!(redact_url("host=h user=u"), "host=h user=u");
        assert_eq!(
            redact_url("postgresql://a:b:c@h/db"),
            "postgresql://a:***@h/db"
        );
    }

    #[test]
    fn bad_urls_and_schemas_are_refused_without_the_password() {
        let e = PostgresStore::connect_lazy("postgres://u:secret@h:notaport/db", None)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
        assert!(e.contains("u:***@h"), "{e}");
        assert!(PostgresStore::connect_lazy("postgres://u@h/db", Some("x; drop")).is_err());
    }
}
