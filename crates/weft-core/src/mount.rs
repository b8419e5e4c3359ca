//! Mount plans: what a session is built from.
//!
//! A mount plan names the orchestrator and context manager (required), the
//! providers, tools and hooks to mount, and the sub-agents the session may
//! delegate to. It is written in YAML, JSON or TOML:
//!
//! ```yaml
//! session: { orchestrator: loop-basic, context: context-simple }
//! providers: [ { module: provider-anthropic, config: { model: claude-sonnet-4-5 } } ]
//! tools: [ { module: tool-filesystem }, { module: tool-bash } ]
//! hooks: [ { module: hooks-logging } ]
//! agents: { architect: { description: Designs things, system: { instruction: You design. } } }
//! ```
//!
//! A module may be named by a bare string or as `{ module, config }`.
//! Unknown top-level sections are reported as warnings, not errors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Why a mount plan or a module could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MountError {
    /// The text did not parse.
    #[error("cannot parse the mount plan ({format}): {message}")]
    Parse {
        /// yaml, json or toml.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A required field is missing or has the wrong shape.
    #[error("invalid mount plan: {0}")]
    Invalid(String),
    /// No module of that kind has that name.
    #[error("unknown {kind} module {name:?}: known {kind} modules are {}", known.join(", "))]
    UnknownModule {
        /// provider, tool, hook, orchestrator or context.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The names there are.
        known: Vec<String>,
    },
    /// A module refused its configuration.
    #[error("module {module} cannot start: {message}")]
    Module {
        /// The module name.
        module: String,
        /// Why.
        message: String,
    },
    /// A profile does not exist.
    #[error("unknown profile {name:?}: available profiles are {}; user profiles live in $WEFT_HOME/profiles/<name>.yaml", available.join(", "))]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The profiles there are.
        available: Vec<String>,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        message: String,
    },
}

/// One module to mount, with its configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleSpec {
    /// The registered module name (`provider-anthropic`, `tool-bash`, …).
    pub module: String,
    /// Module-specific settings.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
}

impl ModuleSpec {
    /// A spec with no configuration.
    pub fn named(module: impl Into<String>) -> Self {
        Self {
            module: module.into(),
            config: Map::new(),
        }
    }

    /// A string setting.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }

    /// A numeric setting.
    pub fn config_u64(&self, key: &str) -> Option<u64> {
        self.config.get(key).and_then(Value::as_u64)
    }

    /// A numeric setting.
    pub fn config_f64(&self, key: &str) -> Option<f64> {
        self.config.get(key).and_then(Value::as_f64)
    }

    /// A boolean setting.
    pub fn config_bool(&self, key: &str) -> Option<bool> {
        self.config.get(key).and_then(Value::as_bool)
    }
}

impl<'de> Deserialize<'de> for ModuleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            module: String,
            #[serde(default)]
            config: Map<String, Value>,
            #[serde(default)]
            #[allow(dead_code)]
            source: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Name(String),
            Full(Full),
        }
        match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom("a module is a name or { module: NAME, config: { … } }")
        })? {
            Either::Name(module) => Ok(ModuleSpec::named(module)),
            Either::Full(f) => Ok(ModuleSpec {
                module: f.module,
                config: f.config,
            }),
        }
    }
}

/// The `session` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSection {
    /// The orchestrator module.
    pub orchestrator: ModuleSpec,
    /// The context manager module.
    pub context: ModuleSpec,
}

/// A system prompt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemSpec {
    /// The instruction text.
    #[serde(default)]
    pub instruction: String,
}

/// A sub-agent the session may delegate to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentSpec {
    /// What it is for (shown to the model by the task tool).
    #[serde(default)]
    pub description: String,
    /// Its system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemSpec>,
    /// Providers replacing the parent's (empty: inherit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ModuleSpec>,
    /// Tools replacing the parent's (None: inherit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ModuleSpec>>,
}

/// The agent every plan has (agentkernel's `"agent": "assistant"`): the
/// plan's providers and tools with a general assistant's system prompt. A
/// plan that defines an agent of this name replaces it.
pub const ASSISTANT_AGENT: &str = "assistant";

/// The built-in [`ASSISTANT_AGENT`].
pub fn assistant_agent() -> AgentSpec {
    AgentSpec {
        description: "A general helpful assistant: answers questions and uses the session's tools when they help.".into(),
        system: Some(SystemSpec {
            instruction: "You are a helpful assistant. Answer clearly and briefly, and use the \
                          tools you have when they help."
                .into(),
        }),
        providers: Vec::new(),
        tools: None,
    }
}

/// A whole mount plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountPlan {
    /// Orchestrator and context manager.
    pub session: SessionSection,
    /// The session's system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemSpec>,
    /// Providers, in preference order (a `priority` setting overrides).
    #[serde(default)]
    pub providers: Vec<ModuleSpec>,
    /// Tools.
    #[serde(default)]
    pub tools: Vec<ModuleSpec>,
    /// Hooks.
    #[serde(default)]
    pub hooks: Vec<ModuleSpec>,
    /// Sub-agents.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentSpec>,
}

/// A mount plan's text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// YAML (also accepts JSON).
    Yaml,
    /// JSON.
    Json,
    /// TOML.
    Toml,
}

impl PlanFormat {
    /// The format a file name suggests (YAML when unsure).
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => PlanFormat::Json,
            Some("toml") => PlanFormat::Toml,
            _ => PlanFormat::Yaml,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PlanFormat::Yaml => "yaml",
            PlanFormat::Json => "json",
            PlanFormat::Toml => "toml",
        }
    }
}

/// A TOML parse error on one line (`line L, column C: message`): the toml
/// crate's own rendering spans several lines with a source excerpt.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

const KNOWN_SECTIONS: &[&str] = &["session", "system", "providers", "tools", "hooks", "agents"];

/// A parsed plan and the warnings parsing produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPlan {
    /// The plan.
    pub plan: MountPlan,
    /// Warnings (unknown sections, …).
    pub warnings: Vec<String>,
}

/// The session metadata key under which a plan that came from a file
/// (`--mount-plan`) is recorded with the session, so `continue`, `run
/// --resume` and the daemon can run it again without the file. Plans
/// carry no secrets (inline API keys are refused when a plan is parsed).
pub const RECORDED_PLAN_KEY: &str = "mount_plan";

impl MountPlan {
    /// Session metadata recording this plan (see [`RECORDED_PLAN_KEY`]).
    pub fn to_metadata(&self) -> Map<String, Value> {
        let mut map = Map::new();
        if let Ok(value) = serde_json::to_value(self) {
            map.insert(RECORDED_PLAN_KEY.into(), value);
        }
        map
    }

    /// The plan recorded in a session's `metadata`, if any; it is checked
    /// as a plan file is.
    pub fn recorded(metadata: &Map<String, Value>) -> Option<Result<MountPlan, MountError>> {
        let value = metadata.get(RECORDED_PLAN_KEY)?;
        Some(Self::from_value(value.clone()).map(|parsed| parsed.plan))
    }

    /// The plan a session of sub-agent `agent` runs: this plan with the
    /// agent's system prompt, and its providers and tools where it names
    /// them (inheriting the rest); None if the plan has no such agent.
    /// Delegation (the `task` tool) and resuming a sub-agent's session
    /// both use it.
    pub fn for_agent(&self, agent: &str) -> Option<MountPlan> {
        let spec = self.agent(agent)?;
        let spec = &spec;
        let mut plan = self.clone();
        if spec.system.is_some() {
            plan.system = spec.system.clone();
        }
        if !spec.providers.is_empty() {
            plan.providers = spec.providers.clone();
        }
        if let Some(tools) = &spec.tools {
            plan.tools = tools.clone();
        }
        Some(plan)
    }

    /// The sub-agent `name`: the plan's own, else the built-in
    /// [`ASSISTANT_AGENT`] every plan has.
    pub fn agent(&self, name: &str) -> Option<AgentSpec> {
        match self.agents.get(name) {
            Some(spec) => Some(spec.clone()),
            None if name == ASSISTANT_AGENT => Some(assistant_agent()),
            None => None,
        }
    }

    /// Every sub-agent the plan can run, with its spec: the plan's own,
    /// then the built-in [`ASSISTANT_AGENT`] unless the plan defines one.
    pub fn all_agents(&self) -> Vec<(String, AgentSpec)> {
        let mut out: Vec<(String, AgentSpec)> = self
            .agents
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        if !self.agents.contains_key(ASSISTANT_AGENT) {
            out.push((ASSISTANT_AGENT.to_string(), assistant_agent()));
        }
        out
    }

    /// Parses a plan from text in `format`.
    pub fn parse(text: &str, format: PlanFormat) -> Result<ParsedPlan, MountError> {
        let parse_err = |message: String| MountError::Parse {
            format: format.name(),
            message,
        };
        let value: Value = match format {
            PlanFormat::Json => serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?,
            PlanFormat::Yaml => serde_yaml::from_str(text).map_err(|e| parse_err(e.to_string()))?,
            PlanFormat::Toml => {
                let t: toml::Value =
                    toml::from_str(text).map_err(|e| parse_err(toml_message(text, &e)))?;
                serde_json::to_value(t).map_err(|e| parse_err(e.to_string()))?
            }
        };
        Self::from_value(value)
    }

    /// Reads and parses a plan file (format from the extension).
    pub fn load(path: &Path) -> Result<ParsedPlan, MountError> {
        let text = std::fs::read_to_string(path).map_err(|e| MountError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, PlanFormat::from_path(path))
    }

    /// Builds a plan from an already-parsed JSON value.
    pub fn from_value(value: Value) -> Result<ParsedPlan, MountError> {
        let Value::Object(map) = value else {
            return Err(MountError::Invalid(
                "a mount plan is a mapping with a `session` section".into(),
            ));
        };
        let mut warnings = Vec::new();
        for key in map.keys() {
            if !KNOWN_SECTIONS.contains(&key.as_str()) {
                let w = format!(
                    "unknown mount plan section {key:?} ignored (known sections: {})",
                    KNOWN_SECTIONS.join(", ")
                );
                tracing::warn!("{w}");
                warnings.push(w);
            }
        }
        let session = map.get("session").and_then(Value::as_object).ok_or_else(|| {
            MountError::Invalid(
                "the `session` section is missing: add `session: { orchestrator: loop-basic, context: context-simple }`".into(),
            )
        })?;
        for required in ["orchestrator", "context"] {
            if session.get(required).is_none_or(Value::is_null) {
                let example = if required == "orchestrator" {
                    "loop-basic"
                } else {
                    "context-simple"
                };
                return Err(MountError::Invalid(format!(
                    "session.{required} is required: add `{required}: {example}` to the session section"
                )));
            }
        }
        let known: Map<String, Value> = map
            .into_iter()
            .filter(|(k, _)| KNOWN_SECTIONS.contains(&k.as_str()))
            .collect();
        let plan: MountPlan = serde_json::from_value(Value::Object(known))
            .map_err(|e| MountError::Invalid(e.to_string()))?;
        Ok(ParsedPlan { plan, warnings })
    }

    /// The system prompt, if the plan has one.
    pub fn system_instruction(&self) -> Option<&str> {
        self.system
            .as_ref()
            .map(|s| s.instruction.as_str())
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
session: { orchestrator: loop-basic, context: context-simple }
providers: [ { module: provider-anthropic, config: { model: claude-sonnet-4-5 } } ]
tools: [ { module: tool-filesystem }, tool-bash ]
hooks: [ { module: hooks-logging } ]
agents: { architect: { description: Designs, system: { instruction: You design. } } }
"#;

    #[test]
    fn parses_all_three_formats() {
        let yaml = MountPlan::parse(YAML, PlanFormat::Yaml).unwrap().plan;
        assert_eq!(yaml.session.orchestrator.module, "loop-basic");
        assert_eq!(
            yaml.providers[0].config_str("model"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(yaml.tools[1].module, "tool-bash");
        assert_eq!(
            yaml.agents["architect"]
                .system
                .as_ref()
                .unwrap()
                .instruction,
            "You design."
        );

        let json = serde_json::to_string(&yaml).unwrap();
        let from_json = MountPlan::parse(&json, PlanFormat::Json).unwrap().plan;
        assert_eq!(from_json, yaml);

        let toml_text = r#"
[session]
orchestrator = "loop-basic"
context = { module = "context-simple", config = { max_tokens = 1000 } }

[[providers]]
module = "provider-scripted"
config = { mode = "echo" }
"#;
        let t = MountPlan::parse(toml_text, PlanFormat::Toml).unwrap().plan;
        assert_eq!(t.session.context.config_u64("max_tokens"), Some(1000));
        assert_eq!(t.providers[0].module, "provider-scripted");
    }

    #[test]
    fn missing_session_parts_are_clear_errors() {
        let err = MountPlan::parse("providers: []", PlanFormat::Yaml).unwrap_err();
        assert!(
            err.to_string().contains("`session` section is missing"),
            "{err}"
        );
        let err =
            MountPlan::parse("session: { context: context-simple }", PlanFormat::Yaml).unwrap_err();
        assert!(
            err.to_string().contains("session.orchestrator is required"),
            "{err}"
        );
        let err = MountPlan::parse("session: { orchestrator: loop-basic }", PlanFormat::Yaml)
            .unwrap_err();
        assert!(
            err.to_string().contains("session.context is required"),
            "{err}"
        );
    }

    #[test]
    fn for_agent_narrows_what_the_agent_names() {
        let plan = MountPlan::parse(YAML, PlanFormat::Yaml).unwrap().plan;
        assert!(plan.for_agent("nobody").is_none());
        let assistant = plan.for_agent(ASSISTANT_AGENT).unwrap();
        assert!(
            assistant
                .system_instruction()
                .unwrap()
                .contains("helpful assistant")
        );
        assert_eq!(assistant.tools, plan.tools);
        assert_eq!(plan.all_agents().len(), 2);
        let architect = plan.for_agent("architect").unwrap();
        assert_eq!(architect.system_instruction(), Some("You design."));
        // What the agent does not name is inherited.
        assert_eq!(architect.providers, plan.providers);
        assert_eq!(architect.tools, plan.tools);

        let mut with_tools = plan.clone();
        let spec = with_tools.agents.get_mut("architect").unwrap();
        spec.tools = Some(Vec::new());
        spec.providers = vec![ModuleSpec::named("provider-scripted")];
        let narrowed = with_tools.for_agent("architect").unwrap();
        assert!(narrowed.tools.is_empty());
        assert_eq!(narrowed.providers[0].module, "provider-scripted");
        assert_eq!(narrowed.hooks, plan.hooks);
    }

    #[test]
    fn unknown_sections_warn() {
        let p = MountPlan::parse(
            "session: { orchestrator: loop-basic, context: context-simple }\nextras: 1\n",
            PlanFormat::Yaml,
        )
        .unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("extras"));
    }
}
