//! `weft doctor`: checks the store of a weft home and, with `--fix`,
//! repairs it (the work is `weft_store::fs::doctor`; this module picks the
//! store from the configuration and prints the report).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use weft_store::StoreKind;
use weft_store::fs::doctor::{self, Report, Severity};

use crate::config::{StoreFlags, WeftConfig};
use crate::ui::progress::Progress;

/// `weft doctor`'s flags.
#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Checks the fs store (the default): every session log parses (corrupt lines, torn \
tails), seqs are gapless from session_created, metadata.json and transcript.jsonl \
match the log, the index matches the sessions, no temp file outlived an interrupted \
write, records set aside in log.quarantine.jsonl, stray files and symlinks under \
projects/, and that config.toml (it holds the server token) is 0600 and the home is \
not writable by others. It writes nothing without --fix, so it works on a read-only \
home.

--fix rebuilds the index, metadata.json and transcript.jsonl from the logs, removes \
stale temp files, cuts a torn last line, moves complete unreadable lines after a \
log's last record to log.quarantine.jsonl and tightens permissions. It never deletes \
a record; corrupt lines in the middle of a log are reported, not repaired.

With --store sqlite it runs SQLite's integrity check and checks every session's seqs.

Exit status: 0 when no problem was found (or all were fixed), 1 when problems remain \
(notices such as stray files do not count), 2 when the home cannot be checked.")]
pub struct DoctorArgs {
    /// Repair what can be repaired without losing a record.
    #[arg(long)]
    pub fix: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the check (and fix) and prints the report. Returns whether the
/// store is healthy (the exit status is 1 otherwise).
pub fn run(home: Option<PathBuf>, store: &StoreFlags, args: &DoctorArgs) -> anyhow::Result<bool> {
    let home = home.unwrap_or_else(weft_store::default_weft_home);
    let config = WeftConfig::load(&home, store)?;
    let resolve = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            home.join(p)
        }
    };
    let report = match config.store.kind {
        StoreKind::Fs => {
            let root = config
                .store
                .path
                .as_ref()
                .map(resolve)
                .unwrap_or_else(|| home.clone());
            check_fs(&root, args.fix)?
        }
        StoreKind::Sqlite => {
            if args.fix {
                anyhow::bail!(
                    "doctor --fix repairs the fs store only; for the sqlite store, run it without --fix and restore a damaged database from a backup"
                );
            }
            let file = config
                .store
                .path
                .as_ref()
                .map(resolve)
                .unwrap_or_else(|| home.join(weft_store::SQLITE_FILE));
            doctor::check_sqlite(&file)
                .with_context(|| format!("cannot check the sqlite store {}", file.display()))?
        }
        StoreKind::Postgres => {
            anyhow::bail!(
                "doctor checks the fs and sqlite stores; a PostgreSQL store is checked with the server's own tools (its constraints keep the log consistent)"
            );
        }
        StoreKind::Redis => {
            anyhow::bail!(
                "doctor checks the fs and sqlite stores; a redis store is checked by its server (redis-cli, and its persistence settings: appendonly yes, appendfsync always)"
            )
        }
        StoreKind::DynamoDb => {
            anyhow::bail!(
                "doctor checks the fs and sqlite stores; a DynamoDB store is checked by DynamoDB itself (its transactions keep each log consistent)"
            )
        }
        StoreKind::Memory => {
            anyhow::bail!(
                "the memory store keeps nothing on disk: there is nothing for doctor to check (use --store fs or sqlite)"
            )
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(report.healthy())
}

fn check_fs(root: &Path, fix: bool) -> anyhow::Result<Report> {
    let progress = Progress::new("checking sessions", 0);
    let result = if fix {
        doctor::fix_reporting(root, &progress)
    } else {
        doctor::check_reporting(root, &progress)
    };
    drop(progress);
    result.with_context(|| format!("cannot check the weft home {}", root.display()))
}

/// The report in plain words: one line per finding, then a summary.
fn render(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.fixed {
        out.push_str(&format!("fixed: {}: {}\n", f.path.display(), f.message));
    }
    for f in &report.findings {
        let label = match f.severity {
            Severity::Problem => "problem",
            Severity::Notice => "notice",
        };
        out.push_str(&format!("{label}: {}: {}\n", f.path.display(), f.message));
    }
    let problems = report.problems();
    let notices = report.findings.len() - problems;
    let mut summary = format!(
        "{}: {} session(s), {} record(s) checked; ",
        report.home.display(),
        report.sessions,
        report.records
    );
    if !report.fixed.is_empty() {
        summary.push_str(&format!("{} fixed, ", report.fixed.len()));
    }
    if problems == 0 {
        summary.push_str("no problems");
    } else {
        let fixable = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Problem && f.fixable)
            .count();
        summary.push_str(&format!("{problems} problem(s)"));
        if fixable > 0 {
            summary.push_str(&format!(" ({fixable} repairable with `weft doctor --fix`)"));
        }
    }
    if notices > 0 {
        summary.push_str(&format!(", {notices} notice(s)"));
    }
    out.push_str(&summary);
    out.push('\n');
    out
}
