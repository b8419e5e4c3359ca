//! `hooks-inject-context`: a hook module that adds configured text to the
//! model's context on one event.
//!
//! ```yaml
//! hooks:
//!   - module: hooks-inject-context
//!     config:
//!       event: provider:request   # default; or prompt:submit, tool:post, …
//!       text: "Remember: answer in French."
//!       role: system              # system (default), user or assistant
//!       ephemeral: true           # this provider call only, never stored
//!       priority: 0
//! ```
//!
//! With `ephemeral: false` (the default, as for any hook's injection) the
//! text is stored in the session like every injection. This module knows the
//! hook contract and module specs only; the orchestrator decides what an
//! injection does.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::hooks::{HookError, HookHandler, HookResult, InjectionRole, events};
use crate::mount::{ModuleSpec, MountError};

/// The module name.
pub const MODULE: &str = "hooks-inject-context";

/// Injects one text on every event it is registered for.
#[derive(Debug, Clone)]
pub struct InjectContextHook {
    text: String,
    role: InjectionRole,
    ephemeral: bool,
}

/// What [`InjectContextHook::from_spec`] builds: the handler and where to
/// register it.
pub struct InjectMount {
    /// The event to register for.
    pub event: String,
    /// Its priority.
    pub priority: i32,
    /// The handler.
    pub handler: Arc<dyn HookHandler>,
}

impl InjectContextHook {
    /// A hook injecting `text` as `role`, ephemeral or not.
    pub fn new(text: impl Into<String>, role: InjectionRole, ephemeral: bool) -> Self {
        Self {
            text: text.into(),
            role,
            ephemeral,
        }
    }

    /// Builds the module from its spec (see the module docs); a missing
    /// `text` or an unknown `role` is refused with the fix.
    pub fn from_spec(spec: &ModuleSpec) -> Result<InjectMount, MountError> {
        let refuse = |message: String| MountError::Module {
            module: spec.module.clone(),
            message,
        };
        let text = spec
            .config_str("text")
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| refuse("config.text is required: the text to inject".into()))?;
        let role = match spec.config.get("role") {
            None | Some(Value::Null) => InjectionRole::System,
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                refuse(format!(
                    "config.role {v} is not a role: use system, user or assistant"
                ))
            })?,
        };
        let priority = match spec.config.get("priority") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| refuse(format!("config.priority {v} is not a whole number")))?,
        };
        Ok(InjectMount {
            event: spec
                .config_str("event")
                .unwrap_or(events::PROVIDER_REQUEST)
                .to_string(),
            priority,
            handler: Arc::new(Self::new(
                text,
                role,
                spec.config_bool("ephemeral").unwrap_or(false),
            )),
        })
    }
}

#[async_trait]
impl HookHandler for InjectContextHook {
    async fn handle(&self, _event: &str, _data: &Value) -> Result<HookResult, HookError> {
        let mut result = HookResult::inject_context(self.text.clone()).with_role(self.role);
        result.ephemeral = self.ephemeral;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(config: Value) -> ModuleSpec {
        serde_json::from_value(json!({"module": MODULE, "config": config})).expect("spec")
    }

    #[tokio::test]
    async fn builds_from_its_config() {
        let m = InjectContextHook::from_spec(&spec(json!({
            "text": "hi", "role": "user", "ephemeral": true, "event": "prompt:submit", "priority": 3
        })))
        .expect("mount");
        assert_eq!((m.event.as_str(), m.priority), ("prompt:submit", 3));
        let r = m
            .handler
            .handle("prompt:submit", &json!({}))
            .await
            .expect("result");
        assert_eq!(r.context_injection.as_deref(), Some("hi"));
        assert_eq!(r.context_injection_role, InjectionRole::User);
        assert!(r.ephemeral);

        let m = InjectContextHook::from_spec(&spec(json!({"text": "x"}))).expect("mount");
        assert_eq!(m.event, events::PROVIDER_REQUEST);
        let r = m.handler.handle("e", &json!({})).await.expect("result");
        assert!(!r.ephemeral);
        assert_eq!(r.context_injection_role, InjectionRole::System);
    }

    #[test]
    fn refuses_bad_config_with_the_fix() {
        let err = InjectContextHook::from_spec(&spec(json!({})))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("config.text is required"), "{err}");
        let err = InjectContextHook::from_spec(&spec(json!({"text": "x", "role": "tool"})))
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("use system, user or assistant"),
            "{err}"
        );
    }
}
