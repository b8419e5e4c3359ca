//! The `tool-mcp` module's settings: which MCP servers to reach and how.
//!
//! Owns parsing and validating the config and expanding `${VAR}`
//! references; knows nothing about connections or tools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weft_core::mount::{ModuleSpec, MountPlan};

/// The module name.
pub const MODULE: &str = "tool-mcp";

/// The default time a server gets to start, list its tools or answer a call.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// The largest `timeout_secs` accepted (a day).
pub const MAX_TIMEOUT_SECS: u64 = 24 * 3600;
/// The default time to wait for an approval answer.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 300;

/// Why a `tool-mcp` config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Settings of the `tool-mcp` module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// The servers, by name (the `<server>` of `mcp__<server>__<tool>`).
    #[serde(default)]
    pub servers: BTreeMap<String, ServerConfig>,
    /// How long to wait for an approval answer before denying (default
    /// 300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_secs: Option<u64>,
}

/// One MCP server: a command to run (stdio) or a URL (streamable HTTP).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The program to run (stdio transport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables added to weft's (values may use `${VAR}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The directory it runs in (default: the session's working
    /// directory; a relative one is resolved against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// The server's URL (streamable HTTP transport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// HTTP headers sent with every request (values may use `${VAR}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Calls run without asking for approval (default false).
    #[serde(default)]
    pub trust: bool,
    /// Seconds to start, list tools or answer one call (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// How to reach a server, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A child process speaking JSON-RPC on stdin/stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment (expanded).
        env: BTreeMap<String, String>,
        /// The directory it runs in.
        cwd: PathBuf,
    },
    /// A streamable-HTTP endpoint.
    Http {
        /// The URL.
        url: String,
        /// Headers (expanded).
        headers: BTreeMap<String, String>,
    },
}

impl McpConfig {
    /// Reads and validates a module config (the mount plan's `config`).
    pub fn from_map(config: &Map<String, Value>) -> Result<Self, ConfigError> {
        let parsed: McpConfig = serde_json::from_value(Value::Object(config.clone()))
            .map_err(|e| {
                ConfigError(format!(
                    "invalid tool-mcp config: {e}; expected {{servers: {{NAME: {{command, args, env, cwd}} or {{url, headers}}}}}}"
                ))
            })?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// Checks every server's shape (not its `${VAR}`s, which are expanded
    /// when it starts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secs) = self.approval_timeout_secs
            && !(1..=MAX_TIMEOUT_SECS).contains(&secs)
        {
            return Err(ConfigError(format!(
                "approval_timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
            )));
        }
        for (name, server) in &self.servers {
            server.validate(name)?;
        }
        Ok(())
    }

    /// Adds these servers to `plan` (what the CLI and daemon do with
    /// config.toml's `[mcp]`): into its first `tool-mcp` module, where a
    /// server the plan already names keeps the plan's settings, or as a new
    /// `tool-mcp` module.
    pub fn add_to_plan(&self, plan: &mut MountPlan) {
        if self.servers.is_empty() {
            return;
        }
        let index = match plan.tools.iter().position(|t| t.module == MODULE) {
            Some(i) => i,
            None => {
                plan.tools.push(ModuleSpec::named(MODULE));
                plan.tools.len() - 1
            }
        };
        let spec = &mut plan.tools[index];
        let servers = spec
            .config
            .entry("servers")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(servers) = servers {
            for (name, server) in &self.servers {
                if !servers.contains_key(name) {
                    servers.insert(
                        name.clone(),
                        serde_json::to_value(server).unwrap_or(Value::Null),
                    );
                }
            }
        }
        if let Some(secs) = self.approval_timeout_secs {
            spec.config
                .entry("approval_timeout_secs")
                .or_insert(secs.into());
        }
    }

    /// How long to wait for an approval answer.
    pub fn approval_timeout(&self) -> Duration {
        Duration::from_secs(
            self.approval_timeout_secs
                .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_SECS),
        )
    }
}

impl ServerConfig {
    /// Checks the shape: exactly one of `command` and `url`, and only the
    /// keys of that transport.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if name.trim().is_empty() {
            return Err(ConfigError("an MCP server name cannot be empty".into()));
        }
        let bad = |msg: &str| Err(ConfigError(format!("MCP server {name:?}: {msg}")));
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => {
                return bad("give either `command` (stdio) or `url` (HTTP), not both");
            }
            (None, None) => return bad("give `command` (stdio) or `url` (HTTP)"),
            (Some(c), None) if c.trim().is_empty() => return bad("`command` is empty"),
            (Some(_), None) if !self.headers.is_empty() => {
                return bad("`headers` only applies to a `url` server");
            }
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return bad("`url` must start with http:// or https://");
                }
                if !self.args.is_empty() || !self.env.is_empty() || self.cwd.is_some() {
                    return bad("`args`, `env` and `cwd` only apply to a `command` server");
                }
            }
            _ => {}
        }
        if let Some(secs) = self.timeout_secs
            && !(1..=MAX_TIMEOUT_SECS).contains(&secs)
        {
            return bad(&format!(
                "timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
            ));
        }
        Ok(())
    }

    /// The time to start, list tools or answer one call.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }

    /// The transport, with `${VAR}`s expanded from `var` and `cwd`
    /// resolved against `working_dir`.
    pub fn transport(
        &self,
        name: &str,
        working_dir: &Path,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Transport, ConfigError> {
        self.validate(name)?;
        let expand_all = |map: &BTreeMap<String, String>, what: &str| {
            map.iter()
                .map(|(k, v)| {
                    expand(v, &var)
                        .map(|v| (k.clone(), v))
                        .map_err(|missing| {
                            ConfigError(format!(
                                "MCP server {name:?}: {what} {k:?} uses ${{{missing}}}, which is not set; set the environment variable"
                            ))
                        })
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
        };
        match (&self.command, &self.url) {
            (Some(command), _) => Ok(Transport::Stdio {
                command: command.clone(),
                args: self.args.clone(),
                env: expand_all(&self.env, "env")?,
                cwd: match &self.cwd {
                    Some(dir) => working_dir.join(dir),
                    None => working_dir.to_path_buf(),
                },
            }),
            (None, Some(url)) => Ok(Transport::Http {
                url: url.clone(),
                headers: expand_all(&self.headers, "header")?,
            }),
            (None, None) => Err(ConfigError(format!(
                "MCP server {name:?}: give `command` (stdio) or `url` (HTTP)"
            ))),
        }
    }

    /// What the server is, for display: the command line or the URL
    /// (never env values or headers, which may hold secrets).
    pub fn target(&self) -> String {
        match (&self.command, &self.url) {
            (Some(c), _) => std::iter::once(c.as_str())
                .chain(self.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            (None, Some(url)) => url.clone(),
            (None, None) => String::new(),
        }
    }

    /// `stdio` or `http`.
    pub fn kind(&self) -> &'static str {
        if self.url.is_some() { "http" } else { "stdio" }
    }
}

/// `text` with each `${NAME}` replaced by `var(NAME)`; `Err(NAME)` for the
/// first one that is not set. `$$` is a literal `$`.
pub fn expand(text: &str, var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            let key = &inner[..end];
            out.push_str(&var(key).ok_or_else(|| key.to_string())?);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<McpConfig, ConfigError> {
        McpConfig::from_map(v.as_object().expect("object"))
    }

    #[test]
    fn both_transports_parse_and_bad_shapes_are_refused() {
        let c = parse(json!({"servers": {
            "fs": {"command": "srv", "args": ["-v"], "env": {"A": "1"}, "trust": true},
            "web": {"url": "http://127.0.0.1:1/mcp", "headers": {"X-Key": "k"}, "timeout_secs": 5}
        }}))
        .expect("valid");
        assert!(c.servers["fs"].trust);
        assert_eq!(c.servers["web"].timeout(), Duration::from_secs(5));
        assert_eq!(c.servers["web"].kind(), "http");
        for bad in [
            json!({"servers": {"x": {}}}),
            json!({"servers": {"x": {"command": "a", "url": "http://h"}}}),
            json!({"servers": {"x": {"url": "ftp://h"}}}),
            json!({"servers": {"x": {"url": "http://h", "args": ["a"]}}}),
            json!({"servers": {"x": {"command": "a", "headers": {"a": "b"}}}}),
            json!({"servers": {"x": {"command": "a", "timeout_secs": 0}}}),
            json!({"servers": {"x": {"command": "a", "trusted": true}}}),
            json!({"server": {}}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn configured_servers_join_a_plan_without_overriding_it() {
        let config = parse(json!({"servers": {
            "a": {"command": "from-config"},
            "b": {"url": "http://127.0.0.1:1/mcp"}
        }}))
        .expect("config");
        let mut plan = weft_core::testing::plan();
        config.add_to_plan(&mut plan);
        let added = plan.tools.last().expect("added");
        assert_eq!(added.module, MODULE);
        assert_eq!(
            added.config["servers"]["b"]["url"],
            "http://127.0.0.1:1/mcp"
        );

        let mut plan = weft_core::testing::plan();
        let mut own = ModuleSpec::named(MODULE);
        own.config
            .insert("servers".into(), json!({"a": {"command": "from-plan"}}));
        plan.tools.push(own);
        config.add_to_plan(&mut plan);
        let mcp: Vec<_> = plan.tools.iter().filter(|t| t.module == MODULE).collect();
        assert_eq!(mcp.len(), 1);
        assert_eq!(mcp[0].config["servers"]["a"]["command"], "from-plan");
        assert_eq!(
            mcp[0].config["servers"]["b"]["url"],
            "http://127.0.0.1:1/mcp"
        );
    }

    #[test]
    fn variables_expand_and_a_missing_one_is_named() {
        let var = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
        assert_eq!(
            expand("Bearer ${TOKEN}", var).as_deref(),
            Ok("Bearer s3cret")
        );
        assert_eq!(expand("$$5 and $x", var).as_deref(), Ok("$5 and $x"));
        assert_eq!(expand("${NOPE}", var), Err("NOPE".to_string()));
        let server = ServerConfig {
            url: Some("http://h/mcp".into()),
            headers: [("Authorization".to_string(), "Bearer ${MISSING}".to_string())].into(),
            ..Default::default()
        };
        let err = server
            .transport("web", Path::new("/"), var)
            .expect_err("missing variable");
        assert!(
            err.0.contains("MISSING") && !err.0.contains("Bearer"),
            "{err}"
        );
    }
}
