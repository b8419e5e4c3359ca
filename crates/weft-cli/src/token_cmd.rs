//! `weft token create|list|revoke`: the daemon's tokens in
//! `$WEFT_HOME/tokens.toml` (weft-server's [`TokenFile`] owns the format,
//! hashing and atomic 0600 writes; this module only parses the flags and
//! prints). It needs no store: only the weft home.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use weft_server::{Scope, TokenFile};

/// The token file of a weft home.
pub fn tokens_path(home: &Path) -> PathBuf {
    home.join("tokens.toml")
}

/// `weft token` subcommands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token for a tenant and print it once (the last line of the
    /// output is the token alone); only its hash is stored.
    Create {
        /// The tenant whose sessions the token reaches (letters, digits, '-', '_', '.').
        #[arg(long)]
        tenant: String,
        /// read: GET only; write: also change sessions and run turns;
        /// admin: every tenant's sessions and cleanup.
        #[arg(long, default_value = "write")]
        scope: Scope,
    },
    /// List the tokens (ids, tenants, scopes; never the tokens).
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; a running `weft serve` refuses it from its
    /// next request on.
    Revoke {
        /// The token's id (`weft token list` shows it).
        id: String,
    },
}

/// Runs a `weft token` command on the token file of `home`.
pub fn run(home: &Path, cmd: TokenCommand) -> anyhow::Result<()> {
    let path = tokens_path(home);
    let mut file = TokenFile::load(&path)?;
    match cmd {
        TokenCommand::Create { tenant, scope } => {
            let (entry, secret) = file.create(&tenant, scope)?;
            file.save(&path)
                .with_context(|| format!("cannot write the token file {}", path.display()))?;
            println!(
                "created token {} for tenant {} (scope {}); it is shown only now:",
                entry.id, entry.tenant, entry.scope
            );
            println!("{secret}");
        }
        TokenCommand::List { json } => {
            if json {
                let rows: Vec<serde_json::Value> = file
                    .tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({"id": t.id, "tenant": t.tenant, "scope": t.scope, "created": t.created})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if file.tokens.is_empty() {
                println!(
                    "no tokens in {}: make one with `weft token create --tenant NAME`",
                    path.display()
                );
            } else {
                let width = file
                    .tokens
                    .iter()
                    .map(|t| t.tenant.len())
                    .max()
                    .unwrap_or(0);
                let width = width.max("TENANT".len());
                println!(
                    "{:<16}  {:<width$}  {:<5}  CREATED",
                    "ID", "TENANT", "SCOPE"
                );
                for t in &file.tokens {
                    println!(
                        "{:<16}  {:<width$}  {:<5}  {}",
                        t.id,
                        t.tenant,
                        t.scope.to_string(),
                        t.created.format("%Y-%m-%d %H:%M:%S UTC")
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let entry = file.revoke(&id)?;
            file.save(&path)
                .with_context(|| format!("cannot write the token file {}", path.display()))?;
            println!("revoked token {} of tenant {}", entry.id, entry.tenant);
        }
    }
    Ok(())
}
