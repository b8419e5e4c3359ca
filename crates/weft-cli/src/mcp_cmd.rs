//! `weft mcp …` and the MCP servers of config.toml.
//!
//! Owns adding `[mcp.servers.NAME]` from config.toml to a session's plan
//! (as a `tool-mcp` module) and the `weft mcp list` command, which
//! connects to each server of the plan a session would run and prints its
//! tools. Connections and naming are weft-mcp's.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use serde_json::Value;
use weft_core::mount::{ModuleSpec, MountPlan};
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

/// Adds the servers of config.toml's `[mcp]` to `plan`: into its first
/// `tool-mcp` module (a server the plan names already keeps the plan's
/// settings), or as a new `tool-mcp` module.
pub fn add_configured_servers(plan: &mut MountPlan, config: &McpConfig) {
    if config.servers.is_empty() {
        return;
    }
    let index = match plan.tools.iter().position(|t| t.module == weft_mcp::MODULE) {
        Some(i) => i,
        None => {
            plan.tools.push(ModuleSpec::named(weft_mcp::MODULE));
            plan.tools.len() - 1
        }
    };
    let spec = &mut plan.tools[index];
    let servers = spec
        .config
        .entry("servers")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(servers) = servers {
        for (name, server) in &config.servers {
            if !servers.contains_key(name) {
                servers.insert(
                    name.clone(),
                    serde_json::to_value(server).unwrap_or(Value::Null),
                );
            }
        }
    }
    if let Some(secs) = config.approval_timeout_secs {
        spec.config
            .entry("approval_timeout_secs")
            .or_insert(secs.into());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configured_servers_join_the_plan_without_overriding_it() {
        let config: McpConfig = serde_json::from_value(json!({"servers": {
            "a": {"command": "from-config"},
            "b": {"url": "http://127.0.0.1:1/mcp"}
        }}))
        .expect("config");
        let mut plan = weft_core::testing::plan();
        add_configured_servers(&mut plan, &config);
        let added = plan.tools.last().expect("added");
        assert_eq!(added.module, weft_mcp::MODULE);
        assert_eq!(
            added.config["servers"]["b"]["url"],
            "http://127.0.0.1:1/mcp"
        );

        let mut plan = weft_core::testing::plan();
        let mut own = ModuleSpec::named(weft_mcp::MODULE);
        own.config
            .insert("servers".into(), json!({"a": {"command": "from-plan"}}));
        plan.tools.push(own);
        add_configured_servers(&mut plan, &config);
        let mcp: Vec<_> = plan
            .tools
            .iter()
            .filter(|t| t.module == weft_mcp::MODULE)
            .collect();
        assert_eq!(mcp.len(), 1);
        assert_eq!(mcp[0].config["servers"]["a"]["command"], "from-plan");
        assert_eq!(
            mcp[0].config["servers"]["b"]["url"],
            "http://127.0.0.1:1/mcp"
        );
    }
}
