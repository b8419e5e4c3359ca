//! # weft-store
//!
//! Durable backends for weft's [`Store`] contract (the trait and its
//! in-memory reference implementation live in `weft_core::store` and
//! `weft_core::memory`):
//!
//! - [`fs::FsStore`] — the default: one directory per session under
//!   `$WEFT_HOME/projects/<slug>/sessions/<id>/` with an append-only
//!   `log.jsonl`, Amplifier-shaped `transcript.jsonl`, `metadata.json` and
//!   `events.jsonl`, plus a side index for listing.
//! - [`sqlite::SqliteStore`] — one SQLite database (WAL, FTS5 search).
//! - `postgres::PostgresStore` (cargo feature `postgres`) — one
//!   PostgreSQL database shared by several processes and nodes.
//! - `memory` — [`weft_core::memory::MemoryStore`], re-exported for
//!   [`open_store`].
//! - `redis::RedisStore` (cargo feature `redis`) — sessions in a Redis
//!   server shared by several processes and nodes (Lua-scripted appends).
//! - `dynamodb::DynamoStore` (cargo feature `dynamodb`) — sessions in one
//!   Amazon DynamoDB table (transactional appends, a GSI per listing).
//!
//! The fs and sqlite backends are synchronous ([`blocking::BlockingStore`]);
//! [`blocking::Blocking`] runs them on tokio's blocking pool as a [`Store`],
//! and both store records as the same JSON lines (the private `codec`
//! module).
//!
//! Every backend passes the same [`conformance`] suite. [`import`] reads
//! sessions written by the Amplifier CLI. [`StoreConfig`] and
//! [`open_store`] pick and open a backend from configuration.
//!
//! ```no_run
//! use weft_store::{StoreConfig, default_weft_home, open_store};
//!
//! let store = open_store(&StoreConfig::default(), &default_weft_home())?;
//! assert_eq!(store.kind(), "fs");
//! # Ok::<(), weft_core::StoreError>(())
//! ```

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_core::memory::MemoryStore;
pub use weft_core::store::{Store, StoreError};

pub mod blocking;
pub mod conformance;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod encryption;
pub mod fs;
pub mod import;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sqlite;

mod codec;
#[cfg(any(feature = "postgres", feature = "redis"))]
mod listen;
#[cfg(any(feature = "redis", feature = "dynamodb"))]
mod local_server;
#[cfg(any(feature = "postgres", feature = "redis"))]
mod meta_cache;
mod sql;
mod turn_lock;
mod util;

pub use fs::FsStore;
pub use sqlite::SqliteStore;

/// Which backend [`open_store`] opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// [`FsStore`]: JSONL files under the weft home (the default).
    #[default]
    Fs,
    /// [`SqliteStore`]: one SQLite database file.
    Sqlite,
    /// [`MemoryStore`]: nothing survives the process.
    Memory,
    /// `postgres::PostgresStore`: a PostgreSQL database (`url`); needs
    /// the cargo feature `postgres`.
    Postgres,
    /// `redis::RedisStore` at [`StoreConfig::url`] (cargo feature `redis`).
    Redis,
    /// `dynamodb::DynamoStore` at [`StoreConfig::url`] (cargo feature
    /// `dynamodb`).
    #[serde(rename = "dynamodb")]
    DynamoDb,
}

impl StoreKind {
    /// The name used in configuration (`fs`, `sqlite`, `memory`, `redis`).
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Fs => "fs",
            StoreKind::Sqlite => "sqlite",
            StoreKind::Memory => "memory",
            StoreKind::Postgres => "postgres",
            StoreKind::Redis => "redis",
            StoreKind::DynamoDb => "dynamodb",
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StoreKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fs" => Ok(StoreKind::Fs),
            "sqlite" => Ok(StoreKind::Sqlite),
            "memory" => Ok(StoreKind::Memory),
            "postgres" => Ok(StoreKind::Postgres),
            "redis" => Ok(StoreKind::Redis),
            "dynamodb" => Ok(StoreKind::DynamoDb),
            other => Err(StoreError::Invalid(format!(
                "unknown store kind {other:?}: use fs, sqlite, memory, postgres, redis or dynamodb"
            ))),
        }
    }
}

/// The `[store]` section of weft's configuration
/// (`WEFT_STORE__KIND`, `WEFT_STORE__PATH`, `WEFT_STORE__URL`).
///
/// ```toml
/// [store]
/// kind = "sqlite"              # fs (default) | sqlite | memory | postgres | redis | dynamodb
/// path = "/data/weft.sqlite"   # optional
/// # url = "postgres://weft:secret@db.internal:5432/weft"   # postgres
/// # url = "redis://127.0.0.1:6379/0?ttl=604800"           # redis
/// # url = "dynamodb:///weft-sessions?region=eu-west-1"     # dynamodb
/// ```
///
/// Its `Debug` form shows the URL without its password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// The backend.
    pub kind: StoreKind,
    /// Where it keeps its data: for `fs` the root directory (default: the
    /// weft home), for `sqlite` the database file (default:
    /// `<weft home>/weft.sqlite`). Ignored by `memory`.
    pub path: Option<PathBuf>,
    /// The server for network stores (`postgres://user:pass@host:port/db`,
    /// `redis://…`); a password in it is never printed.
    /// Ignored by fs, sqlite and memory.
    pub url: Option<String>,
    /// Encryption at rest: weft's configuration fills it from its
    /// top-level `[encryption]` section (`WEFT_ENCRYPTION__KEY`,
    /// `WEFT_ENCRYPTION__KEY_FILE`), not from `[store]`.
    #[serde(skip)]
    pub encryption: encryption::EncryptionConfig,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("encryption", &self.encryption)
            .finish()
    }
}

/// `url` with its password (if any) replaced by `***`, for messages and
/// logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// The file name of the sqlite backend's database inside the weft home.
pub const SQLITE_FILE: &str = "weft.sqlite";

/// Opens the store `config` describes. Relative paths are taken relative to
/// `weft_home`.
pub fn open_store(config: &StoreConfig, weft_home: &Path) -> Result<Arc<dyn Store>, StoreError> {
    open_store_reporting(config, weft_home, &weft_core::progress::NoProgress)
}

/// [`open_store`], telling `progress` how the work the store runs at open
/// goes over many items (the fs store's index rebuild; the other backends'
/// migrations are schema changes and report nothing).
///
/// The store is behind the encryption layer ([`encryption::EncryptedStore`]):
/// with `config.encryption`'s key new sessions are encrypted; without
/// one, encrypted sessions are refused with one clear error.
pub fn open_store_reporting(
    config: &StoreConfig,
    weft_home: &Path,
    progress: &dyn weft_core::progress::Progress,
) -> Result<Arc<dyn Store>, StoreError> {
    let master = config.encryption.master_key()?;
    let backend = open_backend(config, weft_home, progress)?;
    Ok(encryption::wrap(backend, master))
}

/// The backend `config` names, without the encryption layer (for
/// `weft keys rotate`, which works on the raw key ring).
pub fn open_backend(
    config: &StoreConfig,
    weft_home: &Path,
    progress: &dyn weft_core::progress::Progress,
) -> Result<Arc<dyn Store>, StoreError> {
    let resolve = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            weft_home.join(p)
        }
    };
    Ok(match config.kind {
        StoreKind::Fs => {
            let root = config
                .path
                .as_ref()
                .map(resolve)
                .unwrap_or_else(|| weft_home.to_path_buf());
            Arc::new(FsStore::open_reporting(root, progress)?)
        }
        StoreKind::Sqlite => {
            let file = config
                .path
                .as_ref()
                .map(resolve)
                .unwrap_or_else(|| weft_home.join(SQLITE_FILE));
            Arc::new(SqliteStore::open(file)?)
        }
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Postgres => open_postgres(config)?,
        StoreKind::Redis => open_redis(config)?,
        StoreKind::DynamoDb => open_dynamodb(config)?,
    })
}

/// The postgres arm of [`open_store`]: connects on first use (this
/// function is synchronous), so a wrong URL or a server that is down shows
/// at the first operation.
#[cfg(feature = "postgres")]
fn open_postgres(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.url.as_deref().ok_or_else(|| {
        StoreError::Invalid(
            "the postgres store needs a URL: pass --store-url postgres://user:pass@host:port/db, or set WEFT_STORE__URL or [store] url".into(),
        )
    })?;
    Ok(Arc::new(postgres::PostgresStore::connect_lazy(url, None)?))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::Invalid(
        "this weft was built without PostgreSQL support: rebuild weft-store with the cargo feature `postgres`".into(),
    ))
}

/// Opens the redis store at `config.url` (nothing is contacted until first
/// use).
#[cfg(feature = "redis")]
fn open_redis(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.url.as_deref().ok_or_else(|| {
        StoreError::Invalid(
            "the redis store needs a URL: --store-url redis://host:6379 (or WEFT_STORE__URL)"
                .into(),
        )
    })?;
    Ok(Arc::new(redis::RedisStore::open(url)?))
}

#[cfg(not(feature = "redis"))]
fn open_redis(_config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::Invalid(
        "this weft was built without the redis store (cargo feature `redis` of weft-store)".into(),
    ))
}

/// Opens the dynamodb store at `config.url` (nothing is contacted until
/// first use).
#[cfg(feature = "dynamodb")]
fn open_dynamodb(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.url.as_deref().ok_or_else(|| {
        StoreError::Invalid(
            "the dynamodb store needs a URL: --store-url dynamodb://[host:port]/TABLE?region=… (or WEFT_STORE__URL)"
                .into(),
        )
    })?;
    Ok(Arc::new(dynamodb::DynamoStore::open(url)?))
}

#[cfg(not(feature = "dynamodb"))]
fn open_dynamodb(_config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::Invalid(
        "this weft was built without the dynamodb store (cargo feature `dynamodb` of weft-store)"
            .into(),
    ))
}

/// The weft home: `$WEFT_HOME` when set (and not empty), else `~/.weft`
/// (`./.weft` when no home directory is known).
pub fn default_weft_home() -> PathBuf {
    if let Some(home) = std::env::var_os("WEFT_HOME")
        && !home.is_empty()
    {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    user_home.join(".weft")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_kinds() {
        let c: StoreConfig = serde_json::from_str(r#"{"kind":"sqlite","path":"x.db"}"#).unwrap();
        assert_eq!(c.kind, StoreKind::Sqlite);
        assert_eq!(c.path.as_deref(), Some(Path::new("x.db")));
        let d: StoreConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, StoreConfig::default());
        assert_eq!(d.kind, StoreKind::Fs);
        assert!(serde_json::from_str::<StoreConfig>(r#"{"kind":"cassandra"}"#).is_err());
        let r: StoreConfig =
            serde_json::from_str(r#"{"kind":"redis","url":"redis://h:1"}"#).unwrap();
        assert_eq!(r.kind, StoreKind::Redis);
        assert_eq!(r.url.as_deref(), Some("redis://h:1"));
        assert_eq!("memory".parse::<StoreKind>().unwrap(), StoreKind::Memory);
        assert!("nope".parse::<StoreKind>().is_err());
        assert_eq!(
            "postgres".parse::<StoreKind>().unwrap(),
            StoreKind::Postgres
        );
    }

    #[test]
    fn debug_hides_the_url_password() {
        let c = StoreConfig {
            kind: StoreKind::Postgres,
            path: None,
            url: Some("postgres://u:hunter2@h:5432/db".into()),
            ..Default::default()
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("u:***@h"),
            "{shown}"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db?x=@"), "postgres://h/db?x=@");
    }

    #[test]
    fn postgres_needs_a_url() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            kind: StoreKind::Postgres,
            ..Default::default()
        };
        assert!(open_store(&config, dir.path()).is_err());
    }

    #[test]
    fn opens_each_kind() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [StoreKind::Fs, StoreKind::Sqlite, StoreKind::Memory] {
            let config = StoreConfig {
                kind,
                ..Default::default()
            };
            let store = open_store(&config, dir.path()).unwrap();
            assert_eq!(store.kind(), kind.as_str());
        }
        assert!(dir.path().join(SQLITE_FILE).exists());
        let redis = StoreConfig {
            kind: StoreKind::Redis,
            ..Default::default()
        };
        assert!(open_store(&redis, dir.path()).is_err(), "redis needs a URL");
    }

    #[cfg(feature = "dynamodb")]
    #[test]
    fn opens_dynamodb_lazily_with_a_url() {
        let config: StoreConfig = serde_json::from_str(
            r#"{"kind":"dynamodb","url":"dynamodb://127.0.0.1:1/sessions?region=us-east-1"}"#,
        )
        .unwrap();
        assert_eq!(config.kind, StoreKind::DynamoDb);
        assert_eq!(
            "dynamodb".parse::<StoreKind>().unwrap(),
            StoreKind::DynamoDb
        );
        let store = open_store(&config, Path::new("/nonexistent")).unwrap();
        assert_eq!(store.kind(), "dynamodb");
        let no_url = StoreConfig {
            kind: StoreKind::DynamoDb,
            ..Default::default()
        };
        assert!(open_store(&no_url, Path::new("/nonexistent")).is_err());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn opens_redis_lazily_with_a_url() {
        let config = StoreConfig {
            kind: StoreKind::Redis,
            url: Some("redis://127.0.0.1:1/0?prefix=x:".into()),
            ..Default::default()
        };
        let store = open_store(&config, Path::new("/nonexistent")).unwrap();
        assert_eq!(store.kind(), "redis");
    }
}
