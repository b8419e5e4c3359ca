//! `hooks-logging`: writes kernel events to the session's event log
//! (`events.jsonl` in the fs store).
//!
//! Events are scrubbed before they are written: raw provider payloads
//! (`raw`, `request`, `response_raw`, `payload`, `headers` keys) are dropped
//! unless `include_raw: true`; strings longer than `max_field_bytes` (default
//! 4096) are cut; streaming deltas are skipped unless `include_deltas: true`.
//!
//! It knows the hook and store contracts, not the module registry: the
//! registry builds it with [`LoggingHook::from_spec`] and mounts it
//! ([`LoggingHook::mount`] lives there).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::hooks::{HookError, HookHandler, HookResult, events};
use crate::id::SessionId;
use crate::mount::ModuleSpec;
use crate::store::Store;

/// Keys that hold raw provider payloads.
pub const RAW_PAYLOAD_KEYS: &[&str] = &["raw", "request", "response_raw", "payload", "headers"];

/// The `hooks-logging` handler.
pub struct LoggingHook {
    store: Arc<dyn Store>,
    session_id: SessionId,
    include_raw: bool,
    include_deltas: bool,
    max_field_bytes: usize,
}

impl LoggingHook {
    /// The handler for the session `session_id`, configured by its module
    /// spec (`include_raw`, `include_deltas`, `max_field_bytes`). The
    /// registry mounts it as `hooks-logging` ([`crate::registry`]).
    pub fn from_spec(spec: &ModuleSpec, store: Arc<dyn Store>, session_id: SessionId) -> Self {
        LoggingHook {
            store,
            session_id,
            include_raw: spec.config_bool("include_raw").unwrap_or(false),
            include_deltas: spec.config_bool("include_deltas").unwrap_or(false),
            max_field_bytes: spec.config_u64("max_field_bytes").unwrap_or(4096) as usize,
        }
    }

    fn scrub(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    if !self.include_raw && RAW_PAYLOAD_KEYS.contains(&k.as_str()) {
                        continue;
                    }
                    out.insert(k.clone(), self.scrub(v));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.scrub(v)).collect()),
            Value::String(s) if s.len() > self.max_field_bytes => {
                let mut cut = self.max_field_bytes;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                Value::String(format!("{}…[{} bytes cut]", &s[..cut], s.len() - cut))
            }
            other => other.clone(),
        }
    }
}

#[async_trait]
impl HookHandler for LoggingHook {
    async fn handle(&self, event: &str, data: &Value) -> Result<HookResult, HookError> {
        if !self.include_deltas
            && (event == events::CONTENT_BLOCK_DELTA || event == events::THINKING_DELTA)
        {
            return Ok(HookResult::proceed());
        }
        let mut line = Map::new();
        line.insert("event".into(), Value::String(event.to_string()));
        line.insert("data".into(), self.scrub(data));
        self.store
            .write_events(&self.session_id, &[Value::Object(line)])
            .await
            .map_err(|e| HookError(e.to_string()))?;
        Ok(HookResult::proceed())
    }
}
