//! `hoso backup DIR` and `hoso restore DIR` (the embedded default).

use std::path::Path;
use std::process::ExitCode;

use super::{CliError, cli_error, open};
use crate::config::Settings;
use crate::records;

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

pub async fn restore(settings: &Settings, dir: &Path) -> Result<ExitCode, CliError> {
    let n = records::backup::restore(dir, &settings.database_url, &settings.storage_url).await?;
    println!(
        "restored the database and {n} bodies from {}; now run `hoso doctor`",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
