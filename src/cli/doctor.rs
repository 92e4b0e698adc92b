//! `hoso doctor`: every document against its object, and the audit chain.

use std::process::ExitCode;

use super::{CliError, cli_error, open};
use crate::config::Settings;
use crate::records;

pub async fn run(settings: Settings) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    // Every erasure the ledger holds first: a restored database may hold an erased document.
    let ledger = records::erasure::reapply(&app.vault, records::erasure::Source::Live)
        .await
        .map_err(|e| {
            format!(
                "the erasure ledger could not be re-applied: {}",
                cli_error(e)
            )
        })?;
    if !ledger.erased.is_empty() || ledger.bodies > 0 || ledger.rewritten > 0 {
        println!(
            "the erasure ledger ({} records): {} documents erased again, {} bodies deleted, {} \
             records written again",
            ledger.records,
            ledger.erased.len(),
            ledger.bodies,
            ledger.rewritten
        );
    }
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
