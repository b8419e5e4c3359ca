//! `metadata.json` and `parent_id`: the shape of a session's metadata
//! files, for weft and for the tools that read Amplifier's layout.
//!
//! `metadata.json` is the folded [`SessionMeta`] (a cache of the log; see
//! the module docs of `fs`) plus `log_bytes`, the log length it folds, plus
//! the keys the Amplifier CLI writes and its tools read:
//!
//! | key | value |
//! |---|---|
//! | `session_id` | the session id |
//! | `created` | creation time, Python `isoformat()` (`2026-01-02T03:04:05.123456+00:00`) |
//! | `bundle` | `bundle:<profile>` |
//! | `model` | the model, `"unknown"` when none is known |
//! | `turn_count` | user turns (weft's own key, the same meaning) |
//! | `working_dir` | the project directory |
//! | `name`, `description` | when set (weft's own keys) |
//! | `parent_id`, `trace_id`, `agent_name` | lineage (weft's own keys) |
//! | `config`, `agent_overlay` | a delegated session's merged plan and the agent's part of it |
//!
//! Reading ignores the Amplifier-only keys (the folded metadata is the
//! truth) and maps `model: "unknown"` back to no model, so files written
//! before these keys existed read the same.
//!
//! A delegated session's directory also holds `parent_id`: the parent's
//! id, as Amplifier links a sub-session to its parent.
//!
//! This module owns the bytes of these files; it knows nothing of locks,
//! caches or the index (its callers write the files atomically).

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};
use weft_core::session::{META_AGENT_CONFIG, META_AGENT_OVERLAY, SessionMeta};
use weft_core::store::StoreError;

use crate::util::{no_follow, write_atomic};

/// The file naming a delegated session's parent.
pub const PARENT_ID_FILE: &str = "parent_id";

/// What Amplifier writes as `model` when it does not know it.
const UNKNOWN_MODEL: &str = "unknown";

/// The prefix Amplifier gives bundle names in `bundle`.
const BUNDLE_PREFIX: &str = "bundle:";

/// `created` as Amplifier writes it: Python's `datetime.isoformat()` of a
/// UTC time, microseconds included.
pub fn amplifier_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The JSON object of `metadata.json` for `meta` folding `log_bytes` bytes
/// of the log.
pub fn to_value(meta: &SessionMeta, log_bytes: u64) -> Result<Map<String, Value>, StoreError> {
    let Value::Object(mut out) = serde_json::to_value(meta).map_err(encode_err)? else {
        return Err(encode_err_msg("the metadata is not a JSON object"));
    };
    out.insert("log_bytes".into(), log_bytes.into());
    out.insert("session_id".into(), meta.id.as_str().into());
    out.insert("created".into(), amplifier_time(&meta.created_at).into());
    out.insert(
        "bundle".into(),
        format!("{BUNDLE_PREFIX}{}", meta.profile).into(),
    );
    out.insert("working_dir".into(), meta.project.dir.clone().into());
    out.entry("model").or_insert_with(|| UNKNOWN_MODEL.into());
    if meta.agent_name.is_some() {
        for key in [META_AGENT_CONFIG, META_AGENT_OVERLAY] {
            if let Some(v) = meta.metadata.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    Ok(out)
}

/// The bytes of `metadata.json` (pretty JSON, as Amplifier writes it).
pub fn encode(meta: &SessionMeta, log_bytes: u64) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec_pretty(&Value::Object(to_value(meta, log_bytes)?)).map_err(encode_err)
}

#[derive(Deserialize)]
struct MetaFileIn {
    #[serde(flatten)]
    meta: SessionMeta,
    #[serde(default)]
    log_bytes: u64,
}

/// Reads `metadata.json` back: the folded metadata and the log length it
/// folds (0 in files that do not say).
pub fn decode(bytes: &[u8]) -> Result<(SessionMeta, u64), serde_json::Error> {
    let MetaFileIn {
        mut meta,
        log_bytes,
    } = serde_json::from_slice(bytes)?;
    if meta.model.as_deref() == Some(UNKNOWN_MODEL) {
        meta.model = None;
    }
    Ok((meta, log_bytes))
}

/// Writes the `parent_id` file of a delegated session (one with a parent
/// and an agent) in `dir`; does nothing for other sessions. Never through
/// a link.
pub fn write_parent_id(dir: &Path, meta: &SessionMeta) -> Result<(), StoreError> {
    let (Some(parent), Some(_)) = (&meta.parent_id, &meta.agent_name) else {
        return Ok(());
    };
    let path = dir.join(PARENT_ID_FILE);
    if no_follow().read(true).open(&path).is_ok() {
        // Written at creation; a parent never changes.
        return Ok(());
    }
    write_atomic(&path, parent.as_str().as_bytes(), false)
}

fn encode_err(e: serde_json::Error) -> StoreError {
    encode_err_msg(&e.to_string())
}

fn encode_err_msg(message: &str) -> StoreError {
    StoreError::Backend {
        backend: "fs",
        message: format!("cannot encode metadata.json: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::SessionId;
    use weft_core::session::Project;

    fn project() -> Project {
        Project {
            dir: "/home/u/proj".into(),
            slug: "-home-u-proj".into(),
        }
    }

    #[test]
    fn carries_amplifier_keys_and_reads_back() {
        let mut meta = SessionMeta::new(SessionId::new_v7(), project(), "dev");
        meta.turn_count = 3;
        meta.name = Some("named".into());
        let v = to_value(&meta, 42).unwrap();
        assert_eq!(v["session_id"], meta.id.as_str());
        assert_eq!(v["bundle"], "bundle:dev");
        assert_eq!(v["model"], "unknown");
        assert_eq!(v["turn_count"], 3);
        assert_eq!(v["working_dir"], "/home/u/proj");
        assert_eq!(v["name"], "named");
        assert!(v.get("description").is_none());
        assert!(v.get("config").is_none());
        let created = v["created"].as_str().unwrap();
        assert!(created.ends_with("+00:00"), "{created}");
        let (back, log_bytes) = decode(&encode(&meta, 42).unwrap()).unwrap();
        assert_eq!(back, meta);
        assert_eq!(log_bytes, 42);
    }

    #[test]
    fn reads_files_written_before_the_amplifier_keys() {
        let mut meta = SessionMeta::new(SessionId::new_v7(), project(), "base");
        meta.model = Some("m-1".into());
        let mut old = serde_json::to_value(&meta).unwrap();
        old["log_bytes"] = 7.into();
        let (back, log_bytes) = decode(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(back, meta);
        assert_eq!(log_bytes, 7);
    }

    #[test]
    fn children_carry_their_config_and_parent_file() {
        let parent = SessionId::new_v7();
        let mut meta = SessionMeta::new(SessionId::child_of(&parent, "explorer"), project(), "dev");
        meta.parent_id = Some(parent.clone());
        meta.trace_id = parent.clone();
        meta.agent_name = Some("explorer".into());
        meta.metadata
            .insert(META_AGENT_CONFIG.into(), serde_json::json!({"tools": []}));
        meta.metadata.insert(
            META_AGENT_OVERLAY.into(),
            serde_json::json!({"description": "d"}),
        );
        let v = to_value(&meta, 1).unwrap();
        assert_eq!(v["parent_id"], parent.as_str());
        assert_eq!(v["trace_id"], parent.as_str());
        assert_eq!(v["agent_name"], "explorer");
        assert_eq!(v["config"], serde_json::json!({"tools": []}));
        assert_eq!(v["agent_overlay"], serde_json::json!({"description": "d"}));
        let dir = tempfile::tempdir().unwrap();
        write_parent_id(dir.path(), &meta).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PARENT_ID_FILE)).unwrap(),
            parent.as_str()
        );
        let top = SessionMeta::new(SessionId::new_v7(), project(), "dev");
        let other = tempfile::tempdir().unwrap();
        write_parent_id(other.path(), &top).unwrap();
        assert!(!other.path().join(PARENT_ID_FILE).exists());
    }
}
