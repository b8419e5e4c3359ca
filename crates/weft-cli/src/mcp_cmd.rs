//! `weft mcp …` and the MCP servers of config.toml.
//!
//! Owns the `weft mcp list` command, which connects to each server of the
//! plan a session would run (config.toml's `[mcp.servers.NAME]` included,
//! see [`App::base_plan`]) and prints its tools. Connections and naming
//! are weft-mcp's.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use weft_mcp::McpConfig;

use crate::app::{App, PlanChoice};

/// `weft mcp` subcommands.
#[derive(Subcommand)]
pub enum McpCommand {
    /// Connect to every configured MCP server (config.toml, the profile or
    /// the mount plan) and list the tools it offers, as the model sees
    /// them. Exits non-zero when a server fails.
    List {
        /// Profile whose servers to list (default: the project's or
        /// configured one).
        #[arg(long)]
        profile: Option<String>,
        /// A mount-plan file instead of a profile.
        #[arg(long, alias = "plan", value_name = "FILE")]
        mount_plan: Option<PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `weft mcp` command.
pub async fn run(app: &App, cmd: McpCommand) -> anyhow::Result<()> {
    match cmd {
        McpCommand::List {
            profile,
            mount_plan,
            json,
        } => list(app, profile, mount_plan, json).await,
    }
}

async fn list(
    app: &App,
    profile: Option<String>,
    mount_plan: Option<PathBuf>,
    json_out: bool,
) -> anyhow::Result<()> {
    let choice = PlanChoice {
        profile,
        mount_plan,
        ..Default::default()
    };
    let (plan, _) = app.base_plan(&choice)?;
    let mut reports = Vec::new();
    for spec in plan.tools.iter().filter(|t| t.module == weft_mcp::MODULE) {
        let config = McpConfig::from_map(&spec.config)?;
        reports.extend(weft_mcp::inspect(&config, std::path::Path::new(&app.project.dir)).await);
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if reports.is_empty() {
        println!(
            "No MCP servers are configured: add [mcp.servers.NAME] to config.toml or a tool-mcp module to the profile."
        );
    } else {
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            let trust = if r.trust { ", trusted" } else { "" };
            println!("{} ({}{trust}): {}", r.name, r.transport, r.target);
            match &r.error {
                Some(e) => println!("  error: {}", e.replace('\n', "\n    ")),
                None if r.tools.is_empty() => println!("  (no tools)"),
                None => {
                    for t in &r.tools {
                        println!("  {:<40}  {}", t.name, t.description);
                    }
                }
            }
        }
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "MCP server(s) {} could not be listed; see the errors above",
            failed.join(", ")
        );
    }
    Ok(())
}
