//! `hoso audit verify`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{cli_error, open};
use crate::config::Settings;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the chain and signatures; exit 0 when intact, 1 naming the first bad entry.
    Verify,
}

pub async fn run(settings: Settings, command: AuditCommand) -> Result<ExitCode, String> {
    match command {
        AuditCommand::Verify => verify(settings).await,
    }
}

async fn verify(settings: Settings) -> Result<ExitCode, String> {
    let app = open(settings).await?;
    let report = crate::audit::verify_log(&app.vault.db, &app.vault.keys())
        .await
        .map_err(cli_error)?;
    if report.ok {
        println!(
            "audit log intact: {} entries, head {}",
            report.entries, report.head
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "audit log NOT intact: first bad entry is {} ({})",
            report.first_bad_seq.unwrap_or_default(),
            report.problem.unwrap_or_default()
        );
        Ok(ExitCode::from(1))
    }
}
