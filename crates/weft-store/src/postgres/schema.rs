//! The postgres store's schema: numbered migrations, applied in order at
//! open and recorded in `weft_schema_version`; a database recording a
//! version newer than [`SCHEMA_VERSION`] is refused.

use deadpool_postgres::Object;
use weft_core::store::StoreError;

use super::{PostgresError, db};

/// The newest schema version this build knows (the number of migrations).
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// An arbitrary constant: the transaction-scoped advisory lock that keeps
/// two processes from migrating at once.
const MIGRATION_LOCK: i64 = 0x7765_6674_0001;

/// The migrations' SQL: migration `n` is `MIGRATIONS[n - 1]`, run with the
/// store's schema first on the search path and `public` (for `pg_trgm`)
/// after it. Append only; never edit one that shipped. Public so tests can
/// build a database at an older version and check the upgrade.
pub const MIGRATIONS: &[&str] = &[
    // 1: sessions, records, shared state, events, turn locks.
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        updated_us BIGINT NOT NULL,
        status TEXT NOT NULL,
        parent_id TEXT,
        name TEXT,
        profile TEXT NOT NULL,
        last_seq BIGINT NOT NULL,
        meta TEXT NOT NULL
     );
     CREATE INDEX sessions_order ON sessions (updated_us DESC, id DESC);
     CREATE INDEX sessions_project ON sessions (project, updated_us DESC, id DESC);
     CREATE INDEX sessions_parent ON sessions (parent_id);
     CREATE TABLE records (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        record TEXT NOT NULL,
        search_text TEXT,
        PRIMARY KEY (session_id, seq)
     );
     CREATE INDEX records_search ON records USING gin (lower(search_text) gin_trgm_ops)
        WHERE search_text IS NOT NULL;
     CREATE TABLE shared_state (
        namespace TEXT PRIMARY KEY,
        state TEXT NOT NULL
     );
     CREATE TABLE events (
        n BIGSERIAL PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        event TEXT NOT NULL
     );
     CREATE INDEX events_session ON events (session_id, n DESC);
     CREATE SEQUENCE turn_lock_tokens;
     CREATE TABLE turn_locks (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        branch TEXT NOT NULL,
        holder TEXT NOT NULL,
        token BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (session_id, branch)
     );",
    // 2: appends that scale across sessions (issue 11). The search index
    // leaves the append path: an append queues its messages' text in
    // `search_queue` (no index, one heap insert) and searches move the
    // queue into `search_docs` (the `pg_trgm` GIN index) first, as does a
    // background task; `records` loses its foreign key (the append checks
    // its session under `FOR UPDATE`, deletes remove records themselves);
    // the session row is ordered by `listed_s` (whole seconds of
    // `updated_us`, generated) so most appends change no indexed column and
    // the row is updated in place (HOT, room kept by `fillfactor`).
    "ALTER TABLE records DROP CONSTRAINT IF EXISTS records_session_id_fkey;
     CREATE TABLE search_docs (
        session_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
     );
     INSERT INTO search_docs (session_id, seq, text)
        SELECT session_id, seq, search_text FROM records WHERE search_text IS NOT NULL;
     CREATE INDEX search_docs_text ON search_docs USING gin (lower(text) gin_trgm_ops);
     CREATE TABLE search_queue (
        session_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        text TEXT NOT NULL
     );
     ALTER TABLE records DROP COLUMN search_text;
     DROP INDEX sessions_order;
     DROP INDEX sessions_project;
     ALTER TABLE sessions
        ADD COLUMN listed_s BIGINT GENERATED ALWAYS AS (updated_us / 1000000) STORED;
     ALTER TABLE sessions SET (fillfactor = 50);
     CREATE INDEX sessions_order ON sessions (listed_s DESC);
     CREATE INDEX sessions_project ON sessions (project, listed_s DESC);",
    // 3: the queue names messages instead of copying their text (the
    // append's WAL was a third text it already held in `records`); the
    // mover reads the text from `records`. What version 2 queued is
    // indexed here, with its text, before the column goes.
    "INSERT INTO search_docs (session_id, seq, text)
        SELECT session_id, seq, text FROM search_queue
        ON CONFLICT (session_id, seq) DO NOTHING;
     DELETE FROM search_queue;
     ALTER TABLE search_queue DROP COLUMN text;",
    // 4: the guarded append (`guarded`) leaves its fold pending in
    // columns of their own instead of rewriting the metadata JSON: a
    // message's effect on the counts, usage, last prompt, model and time,
    // merged into `meta` when a row is read, cleared by the next write of
    // `meta`. The default branch its guard checks is a column too, so
    // the statement never parses `meta`.
    "ALTER TABLE sessions
        ADD COLUMN default_branch TEXT,
        ADD COLUMN fold_updated TEXT,
        ADD COLUMN fold_messages BIGINT,
        ADD COLUMN fold_turns BIGINT,
        ADD COLUMN fold_usage JSONB,
        ADD COLUMN fold_prompt TEXT,
        ADD COLUMN fold_model TEXT;
     UPDATE sessions SET default_branch = meta::jsonb ->> 'default_branch'
        WHERE meta::jsonb ? 'default_branch';",
];

/// Creates `schema` if given, then applies the migrations the database has
/// not seen, each in its own transaction with its version row; refuses a
/// database newer than this build ([`PostgresError::SchemaTooNew`]).
pub(super) async fn migrate(
    conn: &mut Object,
    schema: Option<&str>,
    url: &str,
) -> Result<(), StoreError> {
    let tx = conn.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    if let Some(s) = schema {
        // `s` is checked to be a plain identifier by `connect_lazy`.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
            .await
            .map_err(db)?;
    }
    // The trigram operators live in `public` (on every search path the
    // store sets), whichever schema the store uses.
    tx.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
         CREATE TABLE IF NOT EXISTS weft_schema_version (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );",
    )
    .await
    .map_err(db)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM weft_schema_version",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(PostgresError::SchemaTooNew {
            url: url.to_string(),
            found: current,
            known: SCHEMA_VERSION,
        }
        .into());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO weft_schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(db)?;
        tracing::info!(version, "applied a postgres store migration");
    }
    tx.commit().await.map_err(db)
}
