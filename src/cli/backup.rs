//! `hoso backup DIR` and `hoso restore DIR` (the embedded default).

use std::path::Path;
use std::process::ExitCode;

use super::{CliError, cli_error, open};
use crate::config::Settings;
use crate::records;
use crate::records::erasure::Source;

pub async fn backup(settings: Settings, dir: &Path) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    let n = records::backup::backup(&app.vault, dir, |n| eprintln!("copied {n} bodies…"))
        .await
        .map_err(cli_error)?;
    println!(
        "backup in {}: database snapshot and {n} bodies; back up {} separately",
        dir.display(),
        app.settings.keys_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Where a restore reads the erasure ledger from.
pub enum LedgerGiven<'p> {
    File(&'p Path),
    /// The operator says no erasure was made since the backup.
    None,
}

pub async fn restore(
    settings: Settings,
    dir: &Path,
    ledger: LedgerGiven<'_>,
) -> Result<ExitCode, CliError> {
    let source = match ledger {
        LedgerGiven::File(file) => {
            let keys = super::keyring(&settings)?;
            Source::Exported(super::doctor::exported_ledger(file, &keys)?)
        }
        LedgerGiven::None => Source::Live,
    };
    let (database_url, storage_url) = (settings.database_url.clone(), settings.storage_url.clone());
    let n = records::backup::restore(dir, &database_url, &storage_url).await?;
    // Every erasure the ledger holds, before anything serves the restored vault.
    let reapplied = async {
        let app = open(settings).await?;
        let done = records::erasure::reapply(&app.vault, source)
            .await
            .map_err(|e| CliError::Failed(cli_error(e)))?;
        match done.unreadable() {
            Some(why) => Err(CliError::Failed(why)),
            None => Ok(done),
        }
    }
    .await;
    let reapplied = match reapplied {
        Ok(r) => r,
        Err(e) => {
            records::backup::discard_restored(&database_url, &storage_url);
            return Err(CliError::Failed(format!(
                "the erasure ledger could not be re-applied ({e}); the restore was removed, so \
                 that no erased document is served"
            )));
        }
    };
    println!(
        "restored the database and {n} bodies from {}; the erasure ledger ({} records) re-erased \
         {} documents{}; now run `hoso doctor`",
        dir.display(),
        reapplied.records,
        reapplied.erased.len(),
        if reapplied.held.is_empty() {
            String::new()
        } else {
            format!(" ({} kept under a legal hold)", reapplied.held.len())
        }
    );
    Ok(ExitCode::SUCCESS)
}
