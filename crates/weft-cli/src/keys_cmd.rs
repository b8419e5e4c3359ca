//! `weft keys …`: the master key of encryption at rest.
//!
//! Owns `weft keys generate` (prints a new random master key) and
//! `weft keys rotate` (re-wraps every session's data key under a new
//! master key; no log is rewritten). The key ring and the cryptography are
//! `weft_store::encryption`'s.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use weft_store::encryption::{self, MasterKey};

use crate::config::{StoreFlags, WeftConfig};

/// The variable `weft keys rotate` reads the new key from when no
/// `--new-key-file` is given.
pub const NEW_KEY_VAR: &str = "WEFT_NEW_ENCRYPTION_KEY";

/// `weft keys` subcommands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (base64 of 32 bytes) on stdout, for
    /// WEFT_ENCRYPTION__KEY or a key file.
    Generate,
    /// Re-wrap every session's data key under a new master key; the logs
    /// are not rewritten. The current key comes from WEFT_ENCRYPTION__KEY,
    /// WEFT_ENCRYPTION__KEY_FILE or `[encryption]`; the new one from
    /// --new-key-file or WEFT_NEW_ENCRYPTION_KEY. Stop daemons using the
    /// old key first, then restart them with the new one.
    Rotate {
        /// A file holding the new master key in base64.
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
    },
}

/// Runs a `weft keys` command (before the store is opened: rotation
/// works on the raw key ring).
pub async fn run(
    home: Option<PathBuf>,
    store: &StoreFlags,
    cmd: KeysCommand,
) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate => {
            println!("{}", MasterKey::generate_base64()?);
            Ok(())
        }
        KeysCommand::Rotate { new_key_file } => {
            let home = home.unwrap_or_else(weft_store::default_weft_home);
            rotate(&home, store, new_key_file.as_deref()).await
        }
    }
}

fn new_key(file: Option<&Path>) -> anyhow::Result<MasterKey> {
    if let Some(file) = file {
        return Ok(MasterKey::from_file(file)?);
    }
    match std::env::var(NEW_KEY_VAR) {
        Ok(text) if !text.trim().is_empty() => {
            Ok(MasterKey::from_base64(&text).with_context(|| format!("invalid {NEW_KEY_VAR}"))?)
        }
        _ => bail!(
            "no new master key: pass --new-key-file FILE or set {NEW_KEY_VAR} (make one with `weft keys generate`)"
        ),
    }
}

async fn rotate(
    home: &Path,
    flags: &StoreFlags,
    new_key_file: Option<&Path>,
) -> anyhow::Result<()> {
    let config = WeftConfig::load(home, flags)?;
    let old = config
        .store
        .encryption
        .master_key()
        .context("invalid current encryption key")?;
    let new = new_key(new_key_file)?;
    let backend = weft_store::open_backend(&config.store, home, &weft_core::progress::NoProgress)
        .with_context(|| format!("cannot open the {} store", config.store.kind))?;
    let report = encryption::rotate(backend.as_ref(), old.as_ref(), &new)
        .await
        .context("cannot rotate the master key")?;
    println!(
        "re-wrapped {} data key(s) under master key {} ({} already were); set WEFT_ENCRYPTION__KEY (or the key file) to the new key now",
        report.rewrapped,
        new.id(),
        report.already
    );
    Ok(())
}
