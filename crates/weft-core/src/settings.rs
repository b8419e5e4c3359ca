//! Settings overrides: what a session changes of its profile when it is
//! created (amplifierd's `settings_overrides`).
//!
//! Every setting a profile can set may be overridden: `model`, `provider`,
//! `temperature`, `max_tokens`, `system_prompt` and `tools` (the tool
//! modules the session mounts, an allow-list). [`SettingsOverrides::parse`]
//! checks a JSON object (unknown keys are refused, all named at once; a bad
//! value names its key); [`SettingsOverrides::apply`] edits a mount plan.
//! The overrides are recorded in the session's metadata under
//! [`SETTINGS_KEY`] and applied again whenever the session is resumed
//! ([`crate::runtime::SessionConfig::resume`]).
//!
//! It knows mount plans and module names, nothing of HTTP or of how a
//! front end builds a plan.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mount::{ModuleSpec, MountPlan, SystemSpec};
use crate::registry::ModuleRegistry;

/// The session metadata key the overrides are recorded under.
pub const SETTINGS_KEY: &str = "settingsOverrides";

/// The keys [`SettingsOverrides::parse`] accepts (camelCase spellings of
/// `max_tokens` and `system_prompt` are accepted too, and the model
/// settings may also be nested in an `llm` object: `llm.model`,
/// `llm.provider`, `llm.temperature`, `llm.max_tokens`).
pub const SETTINGS_KEYS: &[&str] = &[
    "model",
    "provider",
    "temperature",
    "max_tokens",
    "system_prompt",
    "tools",
];

/// Why overrides were refused: the sentence names the key(s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Keys no profile setting has.
    #[error("settingsOverrides: unknown keys {}: the settings that can be overridden are {}", .0.join(", "), SETTINGS_KEYS.join(", "))]
    UnknownKeys(Vec<String>),
    /// A value of the wrong type or out of range.
    #[error("settingsOverrides.{key}: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong and what to give instead.
        message: String,
    },
}

/// The settings a session overrides of its profile (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingsOverrides {
    /// The model the provider talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider module (`provider-openai`, or the short `openai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The sampling temperature (0 to 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The output budget per model call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The tool modules to mount (an allow-list; empty: no tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

fn invalid(key: &str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The canonical name of an accepted key (nested `llm` keys arrive as
/// `llm.<key>`).
fn canonical(key: &str) -> Option<&'static str> {
    match key {
        "maxTokens" | "llm.max_tokens" | "llm.maxTokens" => Some("max_tokens"),
        "systemPrompt" => Some("system_prompt"),
        "llm.model" => Some("model"),
        "llm.provider" => Some("provider"),
        "llm.temperature" => Some("temperature"),
        other => SETTINGS_KEYS.iter().copied().find(|k| *k == other),
    }
}

/// `map` with the entries of an `llm` object lifted to `llm.<key>`
/// (an `llm` that is not an object stays, and is refused as unknown).
fn flatten(map: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        match (k.as_str(), v) {
            ("llm", Value::Object(inner)) => {
                for (ik, iv) in inner {
                    out.insert(format!("llm.{ik}"), iv.clone());
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn text(key: &str, value: &Value) -> Result<String, SettingsError> {
    match value.as_str().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        Some(_) => Err(invalid(key, "must not be empty")),
        None => Err(invalid(key, "must be a string")),
    }
}

impl SettingsOverrides {
    /// Checks and reads `map`: every unknown key is named in one error;
    /// a `null` value leaves that setting alone.
    pub fn parse(map: &Map<String, Value>) -> Result<Self, SettingsError> {
        let map = &flatten(map);
        let unknown: Vec<String> = map
            .keys()
            .filter(|k| canonical(k).is_none())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(SettingsError::UnknownKeys(unknown));
        }
        let mut out = Self::default();
        for (raw, value) in map {
            let Some(key) = canonical(raw) else { continue };
            if value.is_null() {
                continue;
            }
            match key {
                "model" => out.model = Some(text(raw, value)?),
                "provider" => {
                    let name = text(raw, value)?;
                    out.provider = Some(if name.starts_with("provider-") {
                        name
                    } else {
                        format!("provider-{name}")
                    });
                }
                "temperature" => {
                    let t = value
                        .as_f64()
                        .ok_or_else(|| invalid(raw, "must be a number from 0 to 2"))?;
                    if !(0.0..=2.0).contains(&t) {
                        return Err(invalid(raw, format!("must be from 0 to 2, not {t}")));
                    }
                    out.temperature = Some(t);
                }
                "max_tokens" => {
                    let n = value
                        .as_u64()
                        .or_else(|| {
                            value
                                .as_f64()
                                .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= u32::MAX as f64)
                                .map(|f| f as u64)
                        })
                        .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
                        .ok_or_else(|| {
                            invalid(raw, "must be a whole number from 1 to 4294967295")
                        })?;
                    out.max_tokens = Some(n);
                }
                "system_prompt" => {
                    let s = value
                        .as_str()
                        .ok_or_else(|| invalid(raw, "must be a string"))?;
                    out.system_prompt = Some(s.to_string());
                }
                "tools" => {
                    let items = value.as_array().ok_or_else(|| {
                        invalid(
                            raw,
                            "must be a list of tool module names, e.g. [\"tool-filesystem\"]",
                        )
                    })?;
                    let mut tools = Vec::new();
                    for item in items {
                        let name = item.as_str().map(str::trim).filter(|s| !s.is_empty());
                        let Some(name) = name else {
                            return Err(invalid(raw, "every item must be a tool module name"));
                        };
                        if !tools.iter().any(|t| t == name) {
                            tools.push(name.to_string());
                        }
                    }
                    out.tools = Some(tools);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The overrides recorded in a session's `metadata`, if any. Older
    /// records (`llm.model`, or keys this version does not know) yield what
    /// can be read: the model at least.
    pub fn recorded(metadata: &Map<String, Value>) -> Option<Self> {
        let Value::Object(map) = metadata.get(SETTINGS_KEY)? else {
            return None;
        };
        let known: Map<String, Value> = flatten(map)
            .into_iter()
            .filter(|(k, _)| canonical(k).is_some())
            .collect();
        let out = Self::parse(&known).unwrap_or_default();
        (!out.is_empty()).then_some(out)
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the module names against `registry`: the provider must be a
    /// provider module, each tool a tool module.
    pub fn check_modules(&self, registry: &ModuleRegistry) -> Result<(), SettingsError> {
        if let Some(p) = &self.provider {
            let known = registry.provider_names();
            if !known.contains(p) {
                return Err(invalid(
                    "provider",
                    format!("unknown provider {p:?}: use one of {}", known.join(", ")),
                ));
            }
        }
        if let Some(tools) = &self.tools {
            let known = registry.tool_names();
            if let Some(bad) = tools.iter().find(|t| !known.contains(t)) {
                return Err(invalid(
                    "tools",
                    format!(
                        "unknown tool module {bad:?}: use any of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The overrides as the JSON object recorded in the metadata.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// Applies the overrides to `plan`: a different provider replaces the
    /// plan's providers (the profile's settings for that module are kept
    /// when it names it); model, temperature and max tokens go to the
    /// providers' configuration; the system prompt replaces the plan's;
    /// the tool list replaces the plan's tools (each keeps the profile's
    /// configuration for that module).
    pub fn apply(&self, plan: &mut MountPlan) {
        if let Some(provider) = &self.provider
            && plan.providers.first().map(|p| &p.module) != Some(provider)
        {
            let spec = plan
                .providers
                .iter()
                .find(|p| &p.module == provider)
                .cloned()
                .unwrap_or_else(|| ModuleSpec::named(provider.clone()));
            plan.providers = vec![spec];
        }
        for p in &mut plan.providers {
            if let Some(model) = &self.model {
                p.config.insert("model".into(), model.clone().into());
            }
            if let Some(t) = self.temperature {
                p.config.insert("temperature".into(), t.into());
            }
            if let Some(n) = self.max_tokens {
                p.config.insert("max_tokens".into(), n.into());
            }
        }
        if let Some(system) = &self.system_prompt {
            plan.system = Some(SystemSpec {
                instruction: system.clone(),
            });
        }
        if let Some(tools) = &self.tools {
            plan.tools = tools
                .iter()
                .map(|name| {
                    plan.tools
                        .iter()
                        .find(|t| &t.module == name)
                        .cloned()
                        .unwrap_or_else(|| ModuleSpec::named(name.clone()))
                })
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mount::PlanFormat;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn unknown_keys_are_all_named() {
        let err = SettingsOverrides::parse(&map(json!({"model": "m", "colour": 1, "mood": 2})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour") && err.contains("mood"), "{err}");
        assert!(err.contains("system_prompt"), "{err}");
    }

    #[test]
    fn llm_nests_the_model_settings() {
        let o = SettingsOverrides::parse(&map(json!({"llm": {"model": "m1", "temperature": 0.1}})))
            .unwrap();
        assert_eq!(o.model.as_deref(), Some("m1"));
        assert_eq!(o.temperature, Some(0.1));
        let err = SettingsOverrides::parse(&map(json!({"llm": {"colour": 1}})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("llm.colour"), "{err}");
        let err = SettingsOverrides::parse(&map(json!({"llm": {"temperature": 5}})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("settingsOverrides.llm.temperature"), "{err}");
        assert!(SettingsOverrides::parse(&map(json!({"llm": 3}))).is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (body, key) in [
            (json!({"temperature": 3}), "temperature"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"maxTokens": 1.5}), "maxTokens"),
            (json!({"tools": "tool-bash"}), "tools"),
            (json!({"tools": [1]}), "tools"),
            (json!({"model": ""}), "model"),
            (json!({"systemPrompt": 3}), "systemPrompt"),
        ] {
            let err = SettingsOverrides::parse(&map(body.clone()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("settingsOverrides.{key}")),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn apply_edits_every_setting() {
        let mut plan = MountPlan::parse(
            r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"},
                "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}],
                "tools": [{"module": "tool-filesystem", "config": {"x": 1}}, "tool-bash"]}"#,
            PlanFormat::Json,
        )
        .unwrap()
        .plan;
        let o = SettingsOverrides::parse(&map(json!({
            "model": "small", "temperature": 0.5, "maxTokens": 100,
            "system_prompt": "Be brief.", "tools": ["tool-filesystem"], "provider": "scripted"
        })))
        .unwrap();
        assert_eq!(o.provider.as_deref(), Some("provider-scripted"));
        o.apply(&mut plan);
        let p = &plan.providers[0];
        assert_eq!(
            p.config_str("mode"),
            Some("echo"),
            "the profile's provider kept"
        );
        assert_eq!(p.config_str("model"), Some("small"));
        assert_eq!(p.config_f64("temperature"), Some(0.5));
        assert_eq!(p.config_u64("max_tokens"), Some(100));
        assert_eq!(plan.system_instruction(), Some("Be brief."));
        assert_eq!(plan.tools.len(), 1);
        assert_eq!(plan.tools[0].config_u64("x"), Some(1));

        let other = SettingsOverrides::parse(&map(json!({"provider": "provider-openai"}))).unwrap();
        other.apply(&mut plan);
        assert_eq!(plan.providers, vec![ModuleSpec::named("provider-openai")]);
    }

    #[test]
    fn recorded_reads_old_and_new_shapes() {
        let mut meta = Map::new();
        meta.insert(SETTINGS_KEY.into(), json!({"llm": {"model": "old"}}));
        assert_eq!(
            SettingsOverrides::recorded(&meta).unwrap().model.as_deref(),
            Some("old")
        );
        meta.insert(
            SETTINGS_KEY.into(),
            json!({"llm": {"model": "old"}, "extra": 1}),
        );
        assert_eq!(
            SettingsOverrides::recorded(&meta).unwrap().model.as_deref(),
            Some("old")
        );
        meta.insert(SETTINGS_KEY.into(), json!({"temperature": 1.0}));
        assert_eq!(
            SettingsOverrides::recorded(&meta).unwrap().temperature,
            Some(1.0)
        );
        meta.insert(SETTINGS_KEY.into(), json!({}));
        assert!(SettingsOverrides::recorded(&meta).is_none());
    }
}
