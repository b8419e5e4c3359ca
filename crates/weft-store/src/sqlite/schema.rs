//! The sqlite store's schema: creating the tables and indexes and checking
//! the schema version of an existing database.

use super::*;

const SCHEMA_VERSION: &str = "1";

pub(super) fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY,
            project TEXT NOT NULL,
            updated_us INTEGER NOT NULL,
            status TEXT NOT NULL,
            parent_id TEXT,
            name TEXT,
            profile TEXT NOT NULL,
            last_seq INTEGER NOT NULL,
            meta TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS sessions_order ON sessions(updated_us DESC, id DESC);
         CREATE INDEX IF NOT EXISTS sessions_project ON sessions(project, updated_us DESC, id DESC);
         CREATE INDEX IF NOT EXISTS sessions_parent ON sessions(parent_id);
         CREATE TABLE IF NOT EXISTS records (
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            rid INTEGER NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
         ) WITHOUT ROWID;
         CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5(
            text, content='', contentless_delete=1, tokenize='trigram', detail=none
         );
         CREATE TABLE IF NOT EXISTS fts_state (
            k INTEGER PRIMARY KEY CHECK (k = 0),
            indexed_rid INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO fts_state (k, indexed_rid) VALUES (0, 0);
         CREATE TABLE IF NOT EXISTS shared_state (
            namespace TEXT PRIMARY KEY,
            state TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS events (
            session_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            event TEXT NOT NULL,
            PRIMARY KEY (session_id, n)
         ) WITHOUT ROWID;",
    )?;
    let version: Option<String> = conn
        .query_row("SELECT value FROM info WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match version {
        None => {
            conn.execute(
                "INSERT INTO info (key, value) VALUES ('schema', ?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        Some(v) => {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "the database has schema version {v}; this build reads version {SCHEMA_VERSION}: upgrade weft"
            )));
        }
    }
    Ok(())
}
