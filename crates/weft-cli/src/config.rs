//! Configuration: `$WEFT_HOME/config.toml` plus `WEFT_*` environment
//! variables (`__` separates nesting: `WEFT_STORE__KIND=sqlite`), plus
//! command-line flags, in rising precedence. agentkernel's session
//! variables are read as aliases below the `WEFT_*` ones:
//! `AK_SESSION__TYPE=in_memory|redis|dynamodb` (the store kind),
//! `AK_SESSION__REDIS__URL` (the redis store URL) and
//! `AK_SESSION__DYNAMODB__TABLE_NAME` (the dynamodb table, default
//! [`AK_DYNAMODB_TABLE`]; the endpoint, region and credentials come from
//! the standard `AWS_*` variables, `AWS_ENDPOINT_URL` included). Sessions
//! stored in Redis through agentkernel's variables expire as agentkernel's
//! do: 7 days after their last write ([`AGENTKERNEL_REDIS_TTL`]) unless the
//! URL gives `?ttl=` (`ttl=0`: never); weft's own `--store redis` keeps
//! them forever unless its URL says otherwise.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use weft_store::StoreConfig;

/// The daemon's settings (`[server]`, `WEFT_SERVER__*`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerSection {
    /// Directories the file tools may read without approval besides the
    /// daemon's project directory (`read_roots = ["/data/docs"]`; relative
    /// ones against the directory `weft serve` starts in); weft's home
    /// stays unreadable even inside one.
    #[serde(default)]
    pub read_roots: Vec<PathBuf>,
    /// Address to bind (default 127.0.0.1).
    #[serde(default)]
    pub host: Option<String>,
    /// Port (default 8420).
    #[serde(default)]
    pub port: Option<u16>,
    /// Bearer token required from clients (required off loopback).
    #[serde(default)]
    pub token: Option<String>,
    /// Largest accepted request body, in bytes.
    #[serde(default)]
    pub body_limit: Option<usize>,
    /// Host names the daemon answers to besides loopback ones
    /// (`public_hosts = ["weft.example.org"]`, or a comma-separated
    /// `WEFT_SERVER__PUBLIC_HOSTS`).
    #[serde(default, deserialize_with = "string_or_list")]
    pub public_hosts: Vec<String>,
    /// Origins of web pages allowed to call the daemon cross-origin
    /// (`allowed_origins = ["https://app.example.org"]`).
    #[serde(default, deserialize_with = "string_or_list")]
    pub allowed_origins: Vec<String>,
    /// The most connections served at once (default 4096).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Seconds a client may take to send a request's headers (default 20).
    #[serde(default)]
    pub header_timeout: Option<u64>,
    /// Seconds a client may take to send a request's body (default 30).
    #[serde(default)]
    pub body_timeout: Option<u64>,
}

/// A list from a TOML array, or from one string with comma-separated
/// items (what an environment variable gives).
fn string_or_list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        OneOrMany::Many(items) => items,
    })
}

/// weft's whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WeftConfig {
    /// The weft home (`WEFT_HOME`).
    #[serde(default)]
    pub home: Option<PathBuf>,
    /// The store (`[store]`, `WEFT_STORE__KIND`, `WEFT_STORE__PATH`,
    /// `WEFT_STORE__URL`).
    #[serde(default)]
    pub store: StoreConfig,
    /// Encryption at rest (`[encryption]`, `WEFT_ENCRYPTION__KEY`,
    /// `WEFT_ENCRYPTION__KEY_FILE`); copied into `store.encryption` at load.
    #[serde(default)]
    pub encryption: weft_store::encryption::EncryptionConfig,
    /// The daemon.
    #[serde(default)]
    pub server: ServerSection,
    /// The default profile (default `base`).
    #[serde(default)]
    pub profile: Option<String>,
    /// The default provider (`anthropic`, `openai`, `ollama`, `scripted`).
    #[serde(default)]
    pub provider: Option<String>,
    /// The default model.
    #[serde(default)]
    pub model: Option<String>,
    /// The user recorded as the owner of the sessions this CLI (and a
    /// `weft serve` it starts) makes, whose `user:` state they share
    /// (default `$USER`; `WEFT_USER` sets it too).
    #[serde(default)]
    pub user: Option<String>,
    /// MCP servers added to every session's plan (`[mcp.servers.NAME]`,
    /// the `tool-mcp` module's `servers`; see `mcp_cmd`).
    #[serde(default)]
    pub mcp: weft_mcp::McpConfig,
    /// Terminal output (`[ui] raw = true`, `[ui] color = "never"`).
    #[serde(default)]
    pub ui: crate::ui::UiConfig,
    /// Model prices for the per-turn summary, in US dollars per million
    /// tokens (`[pricing."model"] input = 3.0, output = 15.0, cached = 0.3`).
    #[serde(default)]
    pub pricing: crate::ui::summary::Pricing,
}

/// The config file inside a weft home.
pub fn config_file(home: &Path) -> PathBuf {
    home.join("config.toml")
}

/// The store chosen on the command line (`--store`, `--store-url`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFlags {
    /// `--store`.
    pub kind: Option<String>,
    /// `--store-url`.
    pub url: Option<String>,
}

/// agentkernel's default session TTL on Redis, in seconds (7 days): what
/// sessions stored through `AK_SESSION__TYPE=redis` get unless their URL
/// gives `?ttl=`.
pub const AGENTKERNEL_REDIS_TTL: u64 = 7 * 24 * 3600;

/// `url` with `ttl=<secs>` added unless its query already gives a `ttl`.
fn with_default_ttl(url: &str, secs: u64) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    if query
        .split('&')
        .any(|p| p == "ttl" || p.starts_with("ttl="))
    {
        return url.to_string();
    }
    let sep = if url.contains('?') { "&" } else { "?" };
    format!("{url}{sep}ttl={secs}")
}

/// agentkernel's default DynamoDB table.
pub const AK_DYNAMODB_TABLE: &str = "agent-kernel-sessions";

/// Adds agentkernel's store variables (read through `var`) to `figment`:
/// `AK_SESSION__TYPE` (`in_memory` → `memory`; other values, such as
/// `redis`, as they are), `AK_SESSION__REDIS__URL` (with `redis`,
/// agentkernel's default TTL, [`AGENTKERNEL_REDIS_TTL`], unless the URL
/// gives one), and for `dynamodb` the URL `dynamodb:///<AK_SESSION__DYNAMODB__TABLE_NAME
/// or agent-kernel-sessions>` (endpoint and region from the `AWS_*`
/// variables).
fn agentkernel_aliases(mut figment: Figment, var: impl Fn(&str) -> Option<String>) -> Figment {
    let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let mut redis = false;
    if let Some(kind) = set(var("AK_SESSION__TYPE")) {
        let kind = match kind.trim() {
            "in_memory" => "memory".to_string(),
            other => other.to_string(),
        };
        redis = kind == "redis";
        if kind == "dynamodb" {
            let table = set(var("AK_SESSION__DYNAMODB__TABLE_NAME"))
                .unwrap_or_else(|| AK_DYNAMODB_TABLE.to_string());
            figment = figment.merge(("store.url", format!("dynamodb:///{}", table.trim())));
        }
        figment = figment.merge(("store.kind", kind));
    }
    if let Some(url) = set(var("AK_SESSION__REDIS__URL")) {
        let url = if redis {
            with_default_ttl(url.trim(), AGENTKERNEL_REDIS_TTL)
        } else {
            url
        };
        figment = figment.merge(("store.url", url));
    }
    figment
}

impl WeftConfig {
    /// Loads the configuration for `home`, with the store flags on top.
    pub fn load(home: &Path, flags: &StoreFlags) -> anyhow::Result<Self> {
        let figment = Figment::new().merge(Toml::file(config_file(home)));
        let mut figment = agentkernel_aliases(figment, |k| std::env::var(k).ok())
            .merge(Env::prefixed("WEFT_").split("__"));
        if let Some(kind) = &flags.kind {
            figment = figment.merge(("store.kind", kind.as_str()));
        }
        if let Some(url) = &flags.url {
            figment = figment.merge(("store.url", url.as_str()));
        }
        let mut config: WeftConfig = figment.extract().with_context(|| {
            format!(
                "invalid configuration in {} or WEFT_* variables",
                config_file(home).display()
            )
        })?;
        config
            .mcp
            .validate()
            .with_context(|| format!("invalid [mcp] section in {}", config_file(home).display()))?;
        if let Some((model, _)) = config.pricing.iter().find(|(_, p)| !p.is_valid()) {
            anyhow::bail!(
                "invalid [pricing.{model:?}] in {}: prices are US dollars per million tokens, numbers of zero or more",
                config_file(home).display()
            );
        }
        config.store.encryption = config.encryption.clone();
        config.home = Some(home.to_path_buf());
        Ok(config)
    }

    /// The owner of new sessions (see [`WeftConfig::user`]).
    pub fn user_name(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "default".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agentkernel_session_variables_choose_the_store() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let load = |pairs: &'static [(&'static str, &'static str)]| -> StoreConfig {
            agentkernel_aliases(Figment::new(), env(pairs))
                .extract::<WeftConfig>()
                .expect("config")
                .store
        };
        let redis = load(&[
            ("AK_SESSION__TYPE", "redis"),
            ("AK_SESSION__REDIS__URL", "redis://127.0.0.1:7000"),
        ]);
        assert_eq!(redis.kind, weft_store::StoreKind::Redis);
        // agentkernel's default TTL (7 days) unless the URL gives one.
        assert_eq!(
            redis.url.as_deref(),
            Some("redis://127.0.0.1:7000?ttl=604800")
        );
        let given = load(&[
            ("AK_SESSION__TYPE", "redis"),
            ("AK_SESSION__REDIS__URL", "redis://h:1/0?prefix=ak:&ttl=60"),
        ]);
        assert_eq!(
            given.url.as_deref(),
            Some("redis://h:1/0?prefix=ak:&ttl=60")
        );
        let never = load(&[
            ("AK_SESSION__TYPE", "redis"),
            ("AK_SESSION__REDIS__URL", "redis://h:1?prefix=ak:&ttl=0"),
        ]);
        assert_eq!(never.url.as_deref(), Some("redis://h:1?prefix=ak:&ttl=0"));
        let prefixed = load(&[
            ("AK_SESSION__TYPE", "redis"),
            ("AK_SESSION__REDIS__URL", "redis://h:1?prefix=ak:"),
        ]);
        assert_eq!(
            prefixed.url.as_deref(),
            Some("redis://h:1?prefix=ak:&ttl=604800")
        );
        // The store URL alone (weft's own redis store) gets no TTL.
        let plain = load(&[("AK_SESSION__REDIS__URL", "redis://h:1")]);
        assert_eq!(plain.url.as_deref(), Some("redis://h:1"));
        let dynamo = load(&[
            ("AK_SESSION__TYPE", "dynamodb"),
            ("AK_SESSION__DYNAMODB__TABLE_NAME", "team-sessions"),
        ]);
        assert_eq!(dynamo.kind, weft_store::StoreKind::DynamoDb);
        assert_eq!(dynamo.url.as_deref(), Some("dynamodb:///team-sessions"));
        let dynamo_default = load(&[("AK_SESSION__TYPE", "dynamodb")]);
        assert_eq!(
            dynamo_default.url.as_deref(),
            Some("dynamodb:///agent-kernel-sessions")
        );
        let memory = load(&[("AK_SESSION__TYPE", "in_memory")]);
        assert_eq!(memory.kind, weft_store::StoreKind::Memory);
        assert_eq!(load(&[]), StoreConfig::default());
        // WEFT_* (merged after) wins over the aliases.
        let both: WeftConfig =
            agentkernel_aliases(Figment::new(), env(&[("AK_SESSION__TYPE", "redis")]))
                .merge(("store.kind", "sqlite"))
                .extract()
                .expect("config");
        assert_eq!(both.store.kind, weft_store::StoreKind::Sqlite);
    }

    #[test]
    fn server_lists_come_from_toml_arrays_or_comma_separated_strings() {
        let config: WeftConfig = Figment::new()
            .merge(Toml::string(
                r#"[server]
public_hosts = ["weft.example.org"]
max_connections = 64
header_timeout = 5"#,
            ))
            // What `WEFT_SERVER__ALLOWED_ORIGINS=a,b` gives.
            .merge((
                "server.allowed_origins",
                "https://a.example, https://b.example",
            ))
            .extract()
            .expect("config");
        assert_eq!(config.server.public_hosts, ["weft.example.org"]);
        assert_eq!(
            config.server.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(config.server.max_connections, Some(64));
        assert_eq!(config.server.header_timeout, Some(5));
        assert_eq!(config.server.body_timeout, None);
    }

    #[test]
    fn ui_and_pricing_tables_are_read_and_prices_checked() {
        let home = tempfile::tempdir().expect("home");
        std::fs::write(
            config_file(home.path()),
            "[ui]\nraw = true\ncolor = \"never\"\n[pricing.\"m-1\"]\ninput = 3.0\noutput = 15\ncached = 0.3\n",
        )
        .expect("write");
        let config = WeftConfig::load(home.path(), &StoreFlags::default()).expect("config");
        assert!(config.ui.raw);
        assert_eq!(config.ui.color, Some(crate::ui::ColorChoice::Never));
        let price = config.pricing["m-1"];
        assert_eq!(
            (price.input, price.output, price.cached),
            (3.0, 15.0, Some(0.3))
        );
        std::fs::write(
            config_file(home.path()),
            "[pricing.m]\ninput = -1.0\noutput = 1.0\n",
        )
        .expect("write");
        let e = WeftConfig::load(home.path(), &StoreFlags::default()).expect_err("refused");
        assert!(e.to_string().contains("invalid [pricing.\"m\"]"), "{e}");
    }
}
