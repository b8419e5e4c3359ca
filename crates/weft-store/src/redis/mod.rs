//! [`RedisStore`]: sessions kept in a Redis server, shared by every process
//! and node that points at it (cargo feature `redis`).
//!
//! # Key layout
//!
//! Every key starts with the store's prefix (default `weft:`, URL query
//! parameter `prefix=`), so several stores can share one database:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<p>s:<id>:meta` | string | the folded [`SessionMeta`] as JSON |
//! | `<p>s:<id>:log` | list | the log: record `seq` at index `seq - 1`, each the JSON line of the shared record codec |
//! | `<p>s:<id>:events` | list | kernel events (newest [`REDIS_EVENTS_CAP`] kept) |
//! | `<p>s:<id>:turn:<branch>` | string | a held turn lock: its token, `SET NX PX` with a TTL the holder renews |
//! | `<p>s:<id>:turns` | hash | branch → the [`TurnHolder`](weft_core::lease::TurnHolder) JSON of the last holder that did not release |
//! | `<p>sessions` | sorted set | every session id, score = `updated_at` in µs |
//! | `<p>project:<slug>` | sorted set | the project's session ids, score = `updated_at` in µs |
//! | `<p>ids` | sorted set | every session id, score 0 (prefix lookups by `ZRANGEBYLEX`) |
//! | `<p>state:<namespace>` | hash | shared `app:`/`user:` state, key → value JSON |
//! | `<p>live:<id>` | pub/sub channel | the session's live channel: kernel events and commit notices between processes (see `live`) |
//!
//! # Atomicity
//!
//! Every write that must be all-or-nothing is one Lua script (`scripts`):
//! `create` refuses an existing id and writes the first batch, metadata and
//! index entries; `append` compares the log's length (its head `seq`) with
//! `expected_seq` — a mismatch is [`StoreError::Conflict`] with the actual
//! head and writes nothing — then pushes the batch and the new metadata and
//! moves the session in the sorted sets. Metadata is folded in Rust
//! ([`SessionMeta::apply`]) from the metadata read at `expected_seq`, so the
//! script stays a check-and-write that knows nothing about records. Shared
//! state is a hash changed by one script (clear, delete, set), so
//! concurrent writers never lose each other's keys.
//!
//! # Durability
//!
//! Redis only keeps what its persistence settings keep. An append is
//! acknowledged when Redis has applied it; it survives a crash of the
//! server only with **`appendonly yes` and `appendfsync always`** (in
//! `redis.conf`, or `CONFIG SET`). At the first connection the store reads
//! `CONFIG GET appendonly` / `appendfsync` and logs one warning when writes
//! are not fsync'd before they are acknowledged (the stock Debian
//! `redis-server` keeps nothing on disk between snapshots); a server that
//! refuses `CONFIG` (managed Redis) gets a warning saying it could not be
//! checked.
//!
//! # Listing, search, TTL
//!
//! `list` walks the sorted set of the project (or of all sessions) newest
//! first, reading metadata in chunks and applying the other filters here.
//! `search` has no server-side index (no RediSearch): it **scans** the logs
//! of the sessions in scope, newest first, until it has enough hits. An
//! optional TTL (`ttl=<seconds>` in the URL; agentkernel uses 7 days) is
//! set on a session's keys and refreshed on every write; a session that
//! expired is skipped (and dropped from the indexes) by `list`.
//!
//! # Credentials
//!
//! The password in the URL is never printed: errors and logs show the URL
//! through [`scrub_url`].
//!
//! This module owns the key layout, the scripts and the mapping of Redis
//! replies to [`StoreError`]; it must not know the CLI, the runtime, or
//! anything about records beyond the codec and the metadata fold.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;

mod durability;
mod keys;
mod live;
pub mod local;
mod locks;
mod log;
mod query;
mod scripts;
mod store_impl;
mod url;

pub use durability::{Durability, durability_warning};
pub use url::scrub_url;

use keys::Keys;

/// How many kernel events the redis store keeps per session.
pub const REDIS_EVENTS_CAP: i64 = 10_000;

/// How long a turn lock lives without being renewed (its holder renews it
/// every third of this while it runs).
pub const TURN_LOCK_TTL: Duration = Duration::from_secs(30);

/// How long connecting to the server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one command or script may wait for its reply. A write whose
/// reply times out may still have been applied: the caller sees an error
/// and, retrying, a conflict naming the new head.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`RedisStore`] connects and names its keys.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The server URL (`redis://[user:password@]host:port[/db]`), without
    /// weft's own query parameters.
    pub url: String,
    /// The prefix of every key (default `weft:`).
    pub prefix: String,
    /// A TTL set on each session's keys and refreshed on every write
    /// (`None`: sessions never expire).
    pub ttl: Option<Duration>,
    /// How long a turn lock lives without being renewed (default
    /// [`TURN_LOCK_TTL`]; URL `lease_ms=`).
    pub lease: Duration,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &scrub_url(&self.url))
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .finish()
    }
}

impl RedisOptions {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "weft:";

    /// Parses a store URL: the server URL plus weft's optional query
    /// parameters `prefix=<key prefix>`, `ttl=<seconds>` (0: none) and
    /// `lease_ms=<milliseconds>` (the turn lock's lease),
    /// which are taken out before the URL reaches the client.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        url::parse_store_url(url)
    }
}

/// The Redis store. See the module docs.
pub struct RedisStore {
    options: RedisOptions,
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    keys: Keys,
    /// Pub/sub (see `live`).
    live: std::sync::Arc<live::RedisLive>,
    /// Session metadata as this process last wrote or read it: the copy an
    /// append folds from (checked by the append script).
    meta_cache: crate::meta_cache::MetaCache,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("options", &self.options)
            .finish()
    }
}

impl RedisStore {
    /// A store for `url` (see [`RedisOptions::from_url`]). Nothing is
    /// contacted yet: the connection is made, and the server's persistence
    /// settings checked, on first use.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::with_options(RedisOptions::from_url(url)?)
    }

    /// A store with explicit options. Nothing is contacted yet.
    pub fn with_options(options: RedisOptions) -> Result<Self, StoreError> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| backend(&options.url, format!("invalid URL: {e}")))?;
        Ok(Self {
            keys: Keys::new(&options.prefix),
            live: std::sync::Arc::new(live::RedisLive::new(
                client.clone(),
                options.url.clone(),
                &options.prefix,
            )),
            options,
            client,
            conn: OnceCell::new(),
            meta_cache: crate::meta_cache::MetaCache::default(),
        })
    }

    /// The options, as parsed.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// What the server's persistence settings mean for acknowledged
    /// writes (read now; the same check logs a warning at first use).
    pub async fn durability(&self) -> Result<Durability, StoreError> {
        let mut conn = self.conn().await?;
        Ok(durability::read(&mut conn, &self.options.url).await)
    }

    /// The shared connection, made (and the durability checked) on first
    /// use.
    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                // The client's default 500 ms response timeout would turn a
                // slow fsync'd append into an error after it was applied.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                let mut conn = ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| {
                        backend(
                            &self.options.url,
                            format!("cannot connect to {}: {e}", scrub_url(&self.options.url)),
                        )
                    })?;
                durability::check(&mut conn, &self.options.url).await;
                Ok::<_, StoreError>(conn)
            })
            .await?;
        Ok(conn.clone())
    }

    /// Maps a Redis error to a [`StoreError`] without the password.
    fn err(&self, e: redis::RedisError) -> StoreError {
        backend(&self.options.url, e.to_string())
    }

    /// The TTL argument for scripts: milliseconds, 0 for none.
    fn ttl_ms(&self) -> u64 {
        self.options
            .ttl
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1))
            .unwrap_or(0)
    }
}

/// A [`StoreError::Backend`] for the redis store, with the password of
/// `url` scrubbed out of `message`.
fn backend(url: &str, message: String) -> StoreError {
    StoreError::Backend {
        backend: "redis",
        message: url::scrub_secret(url, &message),
    }
}

fn not_found(id: &weft_core::SessionId) -> StoreError {
    StoreError::NotFound(id.to_string())
}

fn encode_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend {
        backend: "redis",
        message: format!("cannot encode: {e}"),
    })
}

fn decode_meta(json: &str, id: &str) -> Result<SessionMeta, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        location: format!("redis key s:{id}:meta"),
        detail: e.to_string(),
    })
}
