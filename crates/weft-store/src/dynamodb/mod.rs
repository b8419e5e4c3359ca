//! [`DynamoStore`]: sessions kept in one Amazon DynamoDB table, shared by
//! every process and node that points at it (cargo feature `dynamodb`).
//!
//! # Store URL
//!
//! `dynamodb://[KEY_ID:SECRET@][host:port]/TABLE[?region=R&create=true&ttl=SECONDS&tls=BOOL]`
//!
//! - `host:port`: a DynamoDB-compatible endpoint (a local server, a VPC
//!   endpoint); loopback hosts are spoken to over plain HTTP, others over
//!   HTTPS (rustls), `tls=` overrides. No host (`dynamodb:///TABLE`):
//!   `AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL` when set, else the
//!   AWS endpoint of the region.
//! - `TABLE`: the table (default [`DEFAULT_TABLE`]).
//! - `region=`: else `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`.
//! - `create=true`: create the table (and its TTL setting) when it does
//!   not exist; without it a missing table is an error naming it.
//! - `ttl=SECONDS`: sessions expire that long after their last write (see
//!   TTL below).
//! - Credentials: `KEY_ID:SECRET@` in the URL, else the standard
//!   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`;
//!   an endpoint given in the URL without any gets dummy credentials (a
//!   local server checks none). The secret is never printed: errors and
//!   `Debug` show the URL through [`scrub_url`].
//!
//! # Items (one table, string keys `pk` / `sk`)
//!
//! | pk | sk | holds |
//! | --- | --- | --- |
//! | session id | `meta` | the folded [`SessionMeta`] JSON (`meta`), `last_seq`, `status`, and for the indexes `project`, `all` (= `ALL`), `lkey` (`<µs updated_at, 20 digits>#<id>`), `sid` (the id); `events` (a counter); while a large append runs, `claim` / `claim_until` |
//! | session id | `r#<seq, 20 digits>` | one record, the shared codec's JSON line (`rec`) |
//! | session id | `e#<n, 20 digits>` | one kernel event (`ev`); the newest [`EVENTS_CAP`] are kept |
//! | session id | `lock#<branch>` | a turn-lock lease: `holder` JSON, `token`, `turn` (the holder's turn id), `lease_until` (ms) |
//! | `state#<namespace>` | `state` | shared state: `data` (JSON object), `version` |
//!
//! Global secondary indexes (projection ALL, only session rows carry their
//! keys): `by-project` (`project`, `lkey`) and `by-update` (`all`,
//! `lkey`) list newest first with keyset paging on `lkey` (the
//! [`ListCursor`](weft_core::store::ListCursor) maps to it exactly);
//! `by-id` (`all`, `sid`) finds ids by prefix. Index reads are eventually
//! consistent on AWS: a session created a moment ago may miss from a
//! listing; reads of one session are strongly consistent.
//!
//! # Atomicity and limits
//!
//! The session row's `last_seq` is the log's head, and **only records up
//! to it exist for readers**: every read bounds its key range by the head
//! it read first. An append is one `TransactWriteItems`: an `Update` of
//! the session row (new metadata, `last_seq`) conditioned on `last_seq =
//! expected` — the conflict check: a failed condition is
//! [`StoreError::Conflict`] naming the head read afterwards — plus a `Put`
//! per record. The record puts carry no `attribute_not_exists` condition:
//! the row's condition already proves that no record above `expected` is
//! committed, and an item above the head can only be a leftover of a
//! failed large append, which must be overwritable.
//!
//! **Fencing.** A batch whose records name a turn (a turn's own records)
//! also carries a `ConditionCheck` on its branch's lock item: that turn's
//! lease must be the one there and unexpired, else the transaction is
//! cancelled and the append fails with [`StoreError::LeaseLost`] (nothing
//! written). So a node that stopped renewing its lease cannot append after
//! another node took the branch over.
//!
//! A transaction holds at most 100 actions and 4 MB. A batch that does not
//! fit (more than [`TXN_RECORDS`] records, or more than [`TXN_BYTES`]) is written in
//! chunks with this guarantee: **readers see all of it or none of it**,
//! and concurrent writers never interleave. The writer first *claims* the
//! session row (`claim` = a token, `claim_until` a lease, conditioned on
//! `last_seq = expected` and no live claim), writes each chunk in a
//! transaction whose row condition is `last_seq = expected AND claim =
//! token`, and moves the head in the last chunk's transaction. A claim
//! that is lost or a head that moves stops the writer at its next chunk
//! (the error is a conflict); its records above the head stay invisible
//! and are overwritten by the next append. A writer that dies leaves its
//! claim to expire ([`CLAIM_LEASE`]); other writers wait that long at most.
//! Creating a session with more than one transaction's worth of records
//! works the same way on a row that has no metadata (invisible) until the
//! last chunk. One record must fit a DynamoDB item (400 KB): a larger one
//! is refused with [`StoreError::Invalid`] before anything is written.
//!
//! # TTL
//!
//! With `ttl=` every write stamps `expires_at` (epoch seconds, the table's
//! TTL attribute, enabled by `create=true`) on the session row and on the
//! items it writes; a session row past its `expires_at` reads as missing
//! (DynamoDB deletes expired items lazily). Records of a session written
//! long ago keep their own stamp, so a long-lived session's oldest records
//! may expire first: use a TTL longer than a session lives.
//!
//! # Search
//!
//! DynamoDB has no text index: `search` **scans** the logs of the sessions
//! in scope, newest session first, with `SearchQuery::matches_text`, until
//! it has enough hits.
//!
//! This module owns the item layout, the transactions and the mapping of
//! DynamoDB errors to [`StoreError`]; it must not know the CLI, the
//! runtime, or anything about records beyond the codec and the metadata
//! fold.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use tokio::sync::OnceCell;
use weft_core::session::SessionMeta;
use weft_core::store::StoreError;

pub mod local;
mod locks;
mod log;
mod query;
mod store_impl;
mod table;
mod url;

pub use url::{Credentials, DEFAULT_REGION, scrub_url};

/// The table when the URL names none.
pub const DEFAULT_TABLE: &str = "weft-sessions";

/// How many kernel events the store keeps per session.
pub const EVENTS_CAP: u64 = 10_000;

/// How long a turn-lock lease lives without being renewed (its holder
/// renews it every third of this while it runs).
pub const TURN_LOCK_TTL: Duration = Duration::from_secs(30);

/// How long a large append's claim on a session lives without progress.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// The most bytes of records one transaction carries (DynamoDB's limit is
/// 4 MB per transaction, keys and attribute names included).
pub const TXN_BYTES: usize = 3_500_000;

/// The most bytes one record's JSON may have (DynamoDB's item limit is
/// 400 KB, keys and attribute names included).
pub const ITEM_BYTES: usize = 399_000;

/// The most records one transaction writes (100 actions: one is the
/// session row, one the fencing check of a turn's batch).
pub const TXN_RECORDS: usize = 98;

/// How a [`DynamoStore`] reaches its table.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DynamoOptions {
    /// The endpoint (`http://127.0.0.1:8000`); `None`: AWS's for the
    /// region.
    pub endpoint: Option<String>,
    /// The table.
    pub table: String,
    /// The region.
    pub region: String,
    /// Whether a missing table is created.
    pub create: bool,
    /// Sessions expire this long after their last write (`None`: never).
    pub ttl: Option<Duration>,
    /// The access keys (`None`: dummy keys for an explicit endpoint).
    pub credentials: Option<Credentials>,
}

impl DynamoOptions {
    /// Parses a store URL (see the module docs).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        url::parse_store_url(url)
    }
}

/// The DynamoDB store. See the module docs.
#[derive(Clone)]
pub struct DynamoStore {
    options: DynamoOptions,
    client: Client,
    ready: std::sync::Arc<OnceCell<()>>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("options", &self.options)
            .finish()
    }
}

impl DynamoStore {
    /// A store for `url`. Nothing is contacted yet: the table is checked
    /// (and created when allowed) on first use.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::with_options(DynamoOptions::from_url(url)?)
    }

    /// A store with explicit options. Nothing is contacted yet.
    pub fn with_options(options: DynamoOptions) -> Result<Self, StoreError> {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
        use aws_smithy_http_client::tls;
        let creds = match (&options.credentials, &options.endpoint) {
            (Some(c), _) => aws_sdk_dynamodb::config::Credentials::new(
                &c.key_id,
                &c.secret,
                c.session_token.clone(),
                None,
                "weft",
            ),
            (None, Some(_)) => aws_sdk_dynamodb::config::Credentials::new(
                "weft-local",
                "weft-local",
                None,
                None,
                "weft",
            ),
            (None, None) => {
                return Err(StoreError::Invalid(
                    "the dynamodb store has no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or put KEY_ID:SECRET@ in the store URL)".into(),
                ));
            }
        };
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(options.region.clone()))
            .credentials_provider(creds)
            .timeout_config(timeouts)
            .http_client(http);
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            options,
            ready: std::sync::Arc::new(OnceCell::new()),
        })
    }

    /// The options, as parsed.
    pub fn options(&self) -> &DynamoOptions {
        &self.options
    }

    /// The SDK client (for tests and tools that inspect the table).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.options.table
    }

    /// The client, once the table is known to exist (checked, and created
    /// when allowed, on first use).
    async fn db(&self) -> Result<&Client, StoreError> {
        self.ready
            .get_or_try_init(|| table::ensure(&self.client, &self.options))
            .await?;
        Ok(&self.client)
    }

    /// Maps an SDK error to a [`StoreError`] without the secret key.
    fn err<E, R>(&self, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let text = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
        if text.contains("ResourceNotFoundException") {
            return table::missing(&self.options);
        }
        backend(&self.options, text)
    }

    /// The `expires_at` stamp of a write now, when a TTL is set.
    fn expires_at(&self) -> Option<AttributeValue> {
        self.options.ttl.map(|ttl| {
            let now = chrono::Utc::now().timestamp();
            n(now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)))
        })
    }
}

/// A [`StoreError::Backend`] for the dynamodb store, with the secret key
/// scrubbed out of `message`.
fn backend(options: &DynamoOptions, message: String) -> StoreError {
    let mut message = message;
    if let Some(c) = &options.credentials {
        if !c.secret.is_empty() {
            message = message.replace(&c.secret, "***");
        }
        if let Some(t) = c.session_token.as_deref().filter(|t| !t.is_empty()) {
            message = message.replace(t, "***");
        }
    }
    StoreError::Backend {
        backend: "dynamodb",
        message,
    }
}

/// An item, as the SDK has it.
type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The string attribute `name` of `item`.
fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// The number attribute `name` of `item`.
fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// The sort key of record `seq`.
fn rec_sk(seq: u64) -> String {
    format!("r#{seq:020}")
}

/// The sort key of event number `k`.
fn ev_sk(k: u64) -> String {
    format!("e#{k:020}")
}

/// The sort key of the session row.
const META_SK: &str = "meta";

/// The listing key of a session: `<µs, 20 digits>#<id>`, ordered as
/// `list_order` reversed.
fn list_key(micros: i64, id: &str) -> String {
    format!("{:020}#{id}", micros.max(0))
}

fn not_found(id: &weft_core::SessionId) -> StoreError {
    StoreError::NotFound(id.to_string())
}

fn encode_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend {
        backend: "dynamodb",
        message: format!("cannot encode: {e}"),
    })
}

fn corrupt(location: String, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        location,
        detail: detail.to_string(),
    }
}

/// The metadata of a session row, `None` when the row is absent, not yet
/// finished (a large create in progress) or expired.
fn row_meta(item: &Item) -> Result<Option<(SessionMeta, u64)>, StoreError> {
    let Some(json) = get_s(item, "meta") else {
        return Ok(None);
    };
    if let Some(exp) = get_n(item, "expires_at")
        && exp < chrono::Utc::now().timestamp()
    {
        return Ok(None);
    }
    let pk = get_s(item, "pk").unwrap_or("?");
    let meta: SessionMeta = serde_json::from_str(json)
        .map_err(|e| corrupt(format!("dynamodb item ({pk}, meta)"), e))?;
    let last_seq = get_n(item, "last_seq")
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(meta.last_seq);
    Ok(Some((meta, last_seq)))
}

/// A `BuildError` (a required field missing: a bug) as a backend error.
fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend {
        backend: "dynamodb",
        message: format!("cannot build a request: {e}"),
    }
}
