//! `hoso retention run [--dry-run]` and `hoso retention ledger export FILE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, cli_error, open};
use crate::config::Settings;
use crate::records::{ledger, retention};

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Erase every document past its type's retention rule (HOSO_RETENTION_FILE) that no
    /// legal hold keeps, after re-applying the erasure ledger. `hoso serve` does this every
    /// HOSO_RETENTION_EVERY_HOURS; one run at a time across the fleet.
    Run {
        /// List what is due (and what a hold keeps) without erasing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// The erasure ledger (kept in the object store, outside the database).
    #[command(subcommand)]
    Ledger(LedgerCommand),
}

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Write every record of the erasure ledger to FILE (one JSON object per line), to keep
    /// beside the keys: `hoso restore --ledger FILE` re-erases from it.
    Export {
        /// A new file (never overwritten).
        file: PathBuf,
    },
}

pub async fn run(settings: Settings, command: RetentionCommand) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    match command {
        RetentionCommand::Run { dry_run } => run_rules(&app, dry_run).await,
        RetentionCommand::Ledger(LedgerCommand::Export { file }) => export(&app, &file).await,
    }
}

async fn run_rules(app: &crate::app::App, dry_run: bool) -> Result<ExitCode, CliError> {
    let report = retention::run(
        &app.vault,
        &app.vault.retention,
        crate::db::now_ms(),
        dry_run,
        |checked, erased| eprintln!("checked {checked} documents, erased {erased}…"),
    )
    .await
    .map_err(|e| match e {
        retention::RunError::Failed(e) => CliError::Failed(cli_error(e)),
        busy => CliError::Failed(busy.to_string()),
    })?;
    super::doctor::say_reapplied(&report.ledger);
    let held: std::collections::HashMap<_, _> = report.held.iter().cloned().collect();
    for (id, doc_type) in &report.due {
        match held.get(id) {
            Some(why) => println!("kept {id} ({doc_type}): {why}"),
            None if dry_run => println!("would erase {id} ({doc_type})"),
            None => println!("erased {id} ({doc_type})"),
        }
    }
    let verb = if dry_run { "would erase" } else { "erased" };
    let erased = if dry_run {
        report.due.len() - report.held.len()
    } else {
        report.erased
    };
    println!(
        "{} documents past their retention rule: {verb} {erased}, {} kept under a legal hold",
        report.due.len(),
        report.held.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn export(app: &crate::app::App, file: &Path) -> Result<ExitCode, CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = ledger::export(&app.vault.blobs, &app.vault.keys(), |n| {
        if n % 1000 == 0 {
            eprintln!("read {n} records…");
        }
    })
    .await
    .map_err(cli_error)?;
    let fail = |e: std::io::Error| format!("{}: {e}", file.display());
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(fail)?;
    out.write_all(text.as_bytes()).map_err(fail)?;
    out.sync_all().map_err(fail)?;
    println!(
        "{} erasure records written to {}; keep it beside {}",
        text.lines().count(),
        file.display(),
        app.settings.keys_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
