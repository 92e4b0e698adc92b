//! `hoso sweep [--delete]`: objects no document will use.

use std::process::ExitCode;

use super::{CliError, cli_error, open};
use crate::config::Settings;
use crate::records;

pub async fn run(settings: Settings, delete: bool) -> Result<ExitCode, CliError> {
    let grace_ms = settings.sweep_grace_ms();
    let app = open(settings).await?;
    let report = records::maintenance::sweep(&app.vault, grace_ms, delete)
        .await
        .map_err(cli_error)?;
    let verb = if delete { "removed" } else { "would remove" };
    for key in &report.abandoned.objects {
        println!("{verb} {key} (an intake that never committed)");
    }
    for key in &report.orphans {
        println!("{verb} {key} (no document points to it)");
    }
    for path in &report.staging_files {
        println!("{verb} {path} (a local write that was cut off)");
    }
    let empty = report.abandoned.intents_without_object;
    if empty > 0 {
        let verb = if delete { "cleared" } else { "would clear" };
        println!("{verb} {empty} records of intakes that never wrote an object");
    }
    let n = report.abandoned.objects.len() + report.orphans.len() + report.staging_files.len();
    println!(
        "{n} objects {verb}{}",
        if delete || n == 0 {
            ""
        } else {
            "; run with --delete to remove them"
        }
    );
    Ok(ExitCode::SUCCESS)
}
