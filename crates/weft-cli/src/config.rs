//! Configuration: `$WEFT_HOME/config.toml` plus `WEFT_*` environment
//! variables (`__` separates nesting: `WEFT_STORE__KIND=sqlite`), plus
//! command-line flags, in rising precedence.

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
}

/// weft's whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WeftConfig {
    /// The weft home (`WEFT_HOME`).
    #[serde(default)]
    pub home: Option<PathBuf>,
    /// The store (`[store]`, `WEFT_STORE__KIND`, `WEFT_STORE__PATH`).
    #[serde(default)]
    pub store: StoreConfig,
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
    /// The user name for `user:` state (default `$USER`).
    #[serde(default)]
    pub user: Option<String>,
}

/// The config file inside a weft home.
pub fn config_file(home: &Path) -> PathBuf {
    home.join("config.toml")
}

impl WeftConfig {
    /// Loads the configuration for `home`, with `store_kind` (the `--store`
    /// flag) on top.
    pub fn load(home: &Path, store_kind: Option<&str>) -> anyhow::Result<Self> {
        let mut figment = Figment::new()
            .merge(Toml::file(config_file(home)))
            .merge(Env::prefixed("WEFT_").split("__"));
        if let Some(kind) = store_kind {
            figment = figment.merge(("store.kind", kind));
        }
        let mut config: WeftConfig = figment.extract().with_context(|| {
            format!(
                "invalid configuration in {} or WEFT_* variables",
                config_file(home).display()
            )
        })?;
        config.home = Some(home.to_path_buf());
        Ok(config)
    }

    /// The user for `user:` state.
    pub fn user_name(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "default".into())
    }
}
