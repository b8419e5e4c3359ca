//! `weft session import`: sessions written by other tools (the Amplifier
//! CLI) copied into the store, with a progress bar on a terminal.

use anyhow::{Context, bail};

use crate::app::App;
use crate::ui::progress::Progress;

/// `weft session import --from-amplifier [DIR]`.
pub async fn import(
    app: &App,
    from_amplifier: Option<std::path::PathBuf>,
    json_out: bool,
) -> anyhow::Result<()> {
    let Some(dir) = from_amplifier else {
        bail!("say where to import from: weft session import --from-amplifier [DIR]");
    };
    let dir = if dir.as_os_str().is_empty() {
        let home =
            std::env::var_os("HOME").context("HOME is not set: pass the Amplifier directory")?;
        std::path::PathBuf::from(home).join(".amplifier")
    } else {
        dir
    };
    let progress = Progress::new("importing sessions", 0);
    let report =
        weft_store::import::import_amplifier_reporting(&dir, app.store.as_ref(), &progress).await?;
    drop(progress);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    for s in &report.imported {
        println!("{}  {} message(s), {} turn(s)", s.id, s.messages, s.turns);
    }
    for f in &report.failed {
        eprintln!("could not import {}: {}", f.path.display(), f.reason);
    }
    eprintln!(
        "imported {} session(s) from {}; skipped {} already present; {} failed{}",
        report.imported.len(),
        dir.display(),
        report.skipped.len(),
        report.failed.len(),
        if report.bad_lines > 0 {
            format!(
                "; {} unreadable transcript line(s) left out",
                report.bad_lines
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
