//! `weft serve`: the daemon (weft-server) over this app's store,
//! configuration and modules.
//!
//! Settings come from the flags, else `[server]` in config.toml /
//! `WEFT_SERVER__*`, else the defaults (127.0.0.1:8420, 1 MiB bodies);
//! `--public-host` and `--allow-origin` add to the configured lists. The
//! provider flags (`--provider`, `--script`, `--mount-plan`, `--model`,
//! `--base-url`) are server-wide defaults for every session it runs, the
//! same choice `weft run` makes from them. It stops on SIGTERM or Ctrl-C:
//! running turns are cancelled and record their partial state first.
//! With a token file (`--tokens`, else `$WEFT_HOME/tokens.toml` when it
//! exists) every request needs one of its tokens: tenants and scopes are
//! weft-server's (`tenancy`); revocations apply without a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use clap::Args;
use weft_core::approval::{ApprovalSystem, FixedApproval};
use weft_core::mount::{MountError, MountPlan};
use weft_server::{PlanError, PlanSource, ServerConfig, ServerContext};

use crate::app::{App, PlanChoice, mount_plan_name};

/// Flags of `weft serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to bind (default 127.0.0.1; anything else needs a token).
    #[arg(long)]
    pub host: Option<String>,
    /// Port (default 8420).
    #[arg(long)]
    pub port: Option<u16>,
    /// Bearer token clients must send (required when not on loopback).
    #[arg(long, env = "WEFT_SERVER__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The token file: tokens with a tenant and a scope (`weft token
    /// create`), re-read when it changes (default: `$WEFT_HOME/tokens.toml`
    /// when it exists). `--token` still works beside it, as an admin token.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Largest request body in bytes (default 1048576).
    #[arg(long, value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Allow every action that needs approval (bash commands, file reads
    /// outside the project directory). Without it the daemon denies them:
    /// it has no terminal to ask at. weft's home is never readable by tools.
    #[arg(long)]
    pub approve: bool,
    /// Default profile for new sessions (default: the configured one, else base).
    #[arg(long)]
    pub profile: Option<String>,
    /// Provider for every session: anthropic, openai, ollama or scripted.
    #[arg(long)]
    pub provider: Option<String>,
    /// Model for the provider.
    #[arg(long)]
    pub model: Option<String>,
    /// Script for the scripted provider (JSON or YAML).
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// A mount-plan file every session uses instead of a profile.
    #[arg(long, value_name = "FILE")]
    pub mount_plan: Option<PathBuf>,
    /// Base URL of the provider's API.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Seconds a plain request may take (default 30).
    #[arg(long, value_name = "SECS")]
    pub request_timeout: Option<u64>,
    /// A host name the daemon also answers to, besides loopback names
    /// (repeatable; adds to `[server] public_hosts`). Requests addressed to
    /// any other name are refused, which stops DNS rebinding.
    #[arg(long = "public-host", value_name = "NAME")]
    pub public_hosts: Vec<String>,
    /// The origin (`https://host[:port]`) of a web page allowed to call the
    /// daemon cross-origin (repeatable; adds to `[server] allowed_origins`).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// The most connections served at once (default 4096); more wait.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}

/// Profiles → plans through [`App::plan`], with the serve flags as
/// server-wide defaults.
struct AppPlans {
    app: App,
    defaults: PlanChoice,
}

#[async_trait]
impl PlanSource for AppPlans {
    async fn plan(&self, profile: Option<&str>) -> Result<(MountPlan, String), PlanError> {
        let mut choice = self.defaults.clone();
        if let Some(p) = profile {
            choice.profile = Some(p.to_string());
        }
        self.app
            .plan(&choice)
            .await
            .map_err(|e| match e.downcast_ref::<MountError>() {
                Some(MountError::UnknownProfile { .. }) => PlanError::UnknownProfile(e.to_string()),
                _ => PlanError::Unavailable(format!("{e:#}")),
            })
    }

    fn fixed_plan(&self) -> Option<String> {
        self.defaults.mount_plan.as_deref().map(mount_plan_name)
    }
}

/// The test fault `WEFT_TEST_DROP_STREAM_AFTER=N` (browser tests of SSE
/// reconnection): the first `/stream` to send N events is closed there.
/// Unset (always, outside tests): None.
fn test_drop_stream_after() -> anyhow::Result<Option<usize>> {
    let Ok(raw) = std::env::var("WEFT_TEST_DROP_STREAM_AFTER") else {
        return Ok(None);
    };
    let n = raw.trim().parse::<usize>().map_err(|_| {
        anyhow::anyhow!(
            "WEFT_TEST_DROP_STREAM_AFTER={raw:?} is not a number of events: unset it (it is a test fault) or give a whole number"
        )
    })?;
    tracing::warn!(
        events = n,
        "test fault on: the first /stream to send {n} events will be closed (WEFT_TEST_DROP_STREAM_AFTER)"
    );
    Ok(Some(n))
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn run(app: &App, args: ServeArgs) -> anyhow::Result<()> {
    let section = &app.config.server;
    let defaults = ServerConfig::default();
    let config = ServerConfig {
        host: args
            .host
            .clone()
            .or_else(|| section.host.clone())
            .unwrap_or(defaults.host.clone()),
        port: args.port.or(section.port).unwrap_or(defaults.port),
        token: args
            .token
            .clone()
            .or_else(|| section.token.clone())
            .filter(|t| !t.is_empty()),
        body_limit: args
            .body_limit
            .or(section.body_limit)
            .unwrap_or(defaults.body_limit),
        request_timeout: args
            .request_timeout
            .map(Duration::from_secs)
            .unwrap_or(defaults.request_timeout),
        public_hosts: section
            .public_hosts
            .iter()
            .chain(&args.public_hosts)
            .cloned()
            .collect(),
        allowed_origins: section
            .allowed_origins
            .iter()
            .chain(&args.allowed_origins)
            .cloned()
            .collect(),
        max_connections: args
            .max_connections
            .or(section.max_connections)
            .unwrap_or(defaults.max_connections),
        header_timeout: section
            .header_timeout
            .map(Duration::from_secs)
            .unwrap_or(defaults.header_timeout),
        body_timeout: section
            .body_timeout
            .map(Duration::from_secs)
            .unwrap_or(defaults.body_timeout),
        tokens: match &args.tokens {
            Some(path) if !path.exists() => anyhow::bail!(
                "the token file {} does not exist: make a token with `weft token create --tenant NAME`, or leave out --tokens",
                path.display()
            ),
            Some(path) => Some(path.clone()),
            None => Some(crate::token_cmd::tokens_path(&app.home)).filter(|p| p.exists()),
        },
        test_drop_stream_after: test_drop_stream_after()?,
        ..defaults
    };
    let addr = config.validate()?;

    // Requests can come from anywhere a browser or script reaches: the file
    // tools ask before reading outside the project and `[server] read_roots`
    // (denied without --approve), and never touch the weft home.
    let mut access = crate::app::tool_access(&app.home, &app.config.store)
        .outside_reads(weft_tools::OutsideReads::Ask)
        .read_root(&app.project.dir);
    for root in &section.read_roots {
        access = access.read_root(root);
    }
    let registry = Arc::new(crate::app::full_registry(access));
    let plans = AppPlans {
        app: App {
            config: app.config.clone(),
            home: app.home.clone(),
            store: app.store.clone(),
            registry: registry.clone(),
            project: app.project.clone(),
        },
        defaults: PlanChoice {
            profile: args.profile.clone(),
            mount_plan: args.mount_plan.clone(),
            provider: args.provider.clone(),
            model: args.model.clone(),
            base_url: args.base_url.clone(),
            script: args.script.clone(),
            ..Default::default()
        },
    };
    // Fail at startup, not at the first request, when the defaults cannot
    // make a plan at all (a missing script or plan file, an unknown
    // provider or profile).
    if args.provider.is_some()
        || args.script.is_some()
        || args.mount_plan.is_some()
        || args.profile.is_some()
    {
        plans
            .plan(None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("the serve flags do not make a usable plan")?;
    }
    let approval: Option<Arc<dyn ApprovalSystem>> = args
        .approve
        .then(|| Arc::new(FixedApproval::allow_all()) as Arc<dyn ApprovalSystem>);
    let ctx = ServerContext {
        store: app.store.clone(),
        registry: registry.clone(),
        plans: Arc::new(plans),
        project: app.project.clone(),
        user: app.config.user_name(),
        home: app.home.clone(),
        approval,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    eprintln!(
        "weft serve: listening on http://{local} ({} store at {}){}",
        app.store.kind(),
        app.store_location(),
        match (&config.tokens, &config.token) {
            (Some(file), _) => format!(", tenant tokens from {}", file.display()),
            (None, Some(_)) => ", token required".to_string(),
            (None, None) => String::new(),
        }
    );
    weft_server::serve_on(listener, config, ctx, shutdown_signal()).await?;
    eprintln!("weft serve: stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
