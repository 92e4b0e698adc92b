//! `hoso doctor`: every document against its object, and the audit chain.

use std::process::ExitCode;

use super::{CliError, cli_error, open};
use crate::config::Settings;
use crate::records;

pub async fn run(settings: Settings) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    let report = records::maintenance::doctor(&app.vault, |done, total| {
        eprintln!("checked {done} of {total} documents…");
    })
    .await
    .map_err(cli_error)?;
    for p in &report.problems {
        println!("document {}: {}", p.document_id, p.what);
    }
    for g in &report.grants {
        println!("grant {}: {}", g.grant_id, g.problem);
    }
    println!(
        "{} documents checked, {} with problems; audit log {} ({} entries{}); {} grants not as \
         the vault wrote them",
        report.documents,
        report.problems.len(),
        if report.audit_ok {
            "intact"
        } else {
            "NOT intact"
        },
        report.audit_entries,
        report
            .audit_problem
            .as_deref()
            .map(|p| format!(", first bad {p}"))
            .unwrap_or_default(),
        report.grants.len()
    );
    Ok(if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
