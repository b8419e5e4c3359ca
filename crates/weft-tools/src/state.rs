//! The `tool-state` module: `state_get` and `state_set`, which let the
//! model read and write its session's keyed state (agentkernel's
//! `session.get/set`). Agents taking turns in one session share it, so
//! what one agent sets the next one reads; keys follow the scopes of
//! `weft_core::state` (`app:`, `user:`, `temp:`, and plain session keys
//! such as `agent:<name>:…`).
//!
//! The tools go through the session's [`SessionState`] from the tool
//! context; they know nothing of where state is stored.
//!
//! [`SessionState`]: weft_core::tool::SessionState

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use weft_core::tool::{Tool, ToolContext, ToolOutput};

use crate::args::Args;

/// Settings of the `tool-state` module (none; unknown keys are refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {}

/// The tools of `tool-state`.
pub fn state_tools(_config: StateConfig) -> Vec<Arc<dyn Tool>> {
    vec![Arc::new(StateGet), Arc::new(StateSet)]
}

const UNAVAILABLE: &str = "session state is not available in this session";

/// `state_get`: one key's value, or every key.
#[derive(Debug, Clone, Default)]
pub struct StateGet;

/// `state_set`: sets a key (null removes it).
#[derive(Debug, Clone, Default)]
pub struct StateSet;

#[async_trait]
impl Tool for StateGet {
    fn name(&self) -> &str {
        "state_get"
    }

    fn description(&self) -> &str {
        "Reads the session's shared state: the value of `key`, or (without `key`) every key \
         and value. Other agents of the session see the same state."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "key": {"type": "string", "description": "The key to read; leave out to read every key."}
            },
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let key = match Args::parse("state_get", &input, &["key"])
            .and_then(|a| a.opt_string("key").map(|k| k.map(str::to_string)))
        {
            Ok(k) => k,
            Err(e) => return ToolOutput::error(e),
        };
        let Some(state) = &ctx.state else {
            return ToolOutput::error(UNAVAILABLE);
        };
        let value = match key.filter(|k| !k.is_empty()) {
            Some(key) => state.get(&key).await.map(|v| v.unwrap_or(Value::Null)),
            None => state.all().await.map(Value::Object),
        };
        match value {
            Ok(v) => ToolOutput::ok(v.to_string()),
            Err(e) => ToolOutput::error(e),
        }
    }
}

#[async_trait]
impl Tool for StateSet {
    fn name(&self) -> &str {
        "state_set"
    }

    fn description(&self) -> &str {
        "Sets `key` in the session's shared state to `value` (any JSON; null removes the key), \
         so later turns and other agents of the session can read it. Plain keys belong to this \
         session (prefix your own with `agent:<your name>:`); `app:` keys are shared by the \
         sessions of the profile, `user:` keys by the user's sessions, `temp:` keys last for \
         this turn."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "key": {"type": "string", "description": "The key."},
                "value": {"description": "The value (any JSON); null removes the key."}
            },
            "required": ["key", "value"],
            "additionalProperties": false
        })
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let key = match Args::parse("state_set", &input, &["key", "value"])
            .and_then(|a| a.non_empty("key").map(str::to_string))
        {
            Ok(k) => k,
            Err(e) => return ToolOutput::error(e),
        };
        let Some(value) = input.get("value") else {
            return ToolOutput::error("state_set needs `value` (any JSON; null removes the key)");
        };
        let Some(state) = &ctx.state else {
            return ToolOutput::error(UNAVAILABLE);
        };
        let value = (!value.is_null()).then(|| value.clone());
        let removed = value.is_none();
        match state.set(&key, value).await {
            Ok(()) if removed => ToolOutput::ok(format!("removed {key}")),
            Ok(()) => ToolOutput::ok(format!("set {key}")),
            Err(e) => ToolOutput::error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use serde_json::Map;
    use tokio_util::sync::CancellationToken;
    use weft_core::hooks::HookRegistry;
    use weft_core::id::{BranchId, SessionId};
    use weft_core::tool::SessionState;

    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<String, Value>>);

    #[async_trait]
    impl SessionState for Memory {
        async fn get(&self, key: &str) -> Result<Option<Value>, String> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn set(&self, key: &str, value: Option<Value>) -> Result<(), String> {
            let mut m = self.0.lock().unwrap();
            match value {
                Some(v) => m.insert(key.into(), v),
                None => m.remove(key),
            };
            Ok(())
        }
        async fn all(&self) -> Result<Map<String, Value>, String> {
            Ok(self.0.lock().unwrap().clone().into_iter().collect())
        }
    }

    fn ctx(state: Option<Arc<dyn SessionState>>) -> ToolContext {
        ToolContext {
            session_id: SessionId::new_v7(),
            branch: BranchId::main(),
            call_id: "c".into(),
            working_dir: std::env::temp_dir(),
            cancel: CancellationToken::new(),
            approval: None,
            hooks: HookRegistry::new(),
            delegate: None,
            state,
        }
    }

    #[tokio::test]
    async fn set_get_and_remove() {
        let c = ctx(Some(Arc::new(Memory::default())));
        let out = StateSet
            .execute(json!({"key": "agent:a:note", "value": {"n": 1}}), &c)
            .await;
        assert!(out.success, "{out:?}");
        let out = StateGet.execute(json!({"key": "agent:a:note"}), &c).await;
        assert_eq!(out.output, r#"{"n":1}"#);
        let out = StateGet.execute(json!({}), &c).await;
        assert_eq!(out.output, r#"{"agent:a:note":{"n":1}}"#);
        let out = StateSet
            .execute(json!({"key": "agent:a:note", "value": null}), &c)
            .await;
        assert_eq!(out.output, "removed agent:a:note");
        let out = StateGet.execute(json!({"key": "agent:a:note"}), &c).await;
        assert_eq!(out.output, "null");
    }

    #[tokio::test]
    async fn bad_input_and_no_state_are_errors() {
        let c = ctx(Some(Arc::new(Memory::default())));
        for bad in [
            json!({"key": ""}),
            json!({"value": 1}),
            json!({"key": "k"}),
            json!(3),
        ] {
            assert!(!StateSet.execute(bad.clone(), &c).await.success, "{bad}");
        }
        assert!(!StateGet.execute(json!({"nope": 1}), &c).await.success);
        let none = ctx(None);
        let out = StateGet.execute(json!({}), &none).await;
        assert_eq!(out.error.as_deref(), Some(UNAVAILABLE));
    }
}
