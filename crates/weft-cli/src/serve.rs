//! `weft serve`: starts the daemon from weft-server on this app's store.

use clap::Args;

use crate::app::App;

/// Flags of `weft serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long)]
    pub host: Option<String>,
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Bearer token clients must send (required when not on loopback).
    #[arg(long, env = "WEFT_SERVER__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn run(_app: &App, _args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("the daemon is being wired in: weft-server is not linked into this build yet")
}
