//! `hoso doctor`: every document against its object, and the audit chain.

use std::process::ExitCode;

use super::{CliError, cli_error, open};
use crate::config::Settings;
use crate::records;

pub async fn run(
    settings: Settings,
    ledger: Option<&std::path::Path>,
) -> Result<ExitCode, CliError> {
    let app = open(settings).await?;
    let ledger = reapply_first(&app, ledger).await?;
    say_reapplied(&ledger);
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
    for id in &report.erased_outside {
        println!(
            "document {id}: marked erased in the database, but the audit log holds no erasure of \
             it (changed behind the vault's back); its key and body were left as they are"
        );
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
    Ok(if report.healthy() && ledger.unreadable().is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every erasure the ledger holds first (and an exported copy's, at scale after restoring the
/// database with its own tools): a restored database may hold an erased document.
async fn reapply_first(
    app: &crate::app::App,
    ledger: Option<&std::path::Path>,
) -> Result<records::erasure::Reapplied, CliError> {
    let source = match ledger {
        Some(file) => records::erasure::Source::Exported(exported_ledger(file, &app.vault.keys())?),
        None => records::erasure::Source::Live,
    };
    records::erasure::reapply(&app.vault, source)
        .await
        .map_err(|e| {
            format!(
                "the erasure ledger could not be re-applied: {}",
                cli_error(e)
            )
        })
        .map_err(CliError::Failed)
}

/// The records of an exported ledger file, each line's seal checked with `keys`.
pub fn exported_ledger(
    file: &std::path::Path,
    keys: &crate::crypto::keyring::Keyring,
) -> Result<Vec<records::ledger::Record>, CliError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("the ledger {}: {e}", file.display()))?;
    records::ledger::parse_export(&text, keys)
        .map_err(|e| CliError::Failed(format!("the ledger {}: {e}", file.display())))
}

/// What re-applying the erasure ledger did, when it did anything.
pub fn say_reapplied(ledger: &records::erasure::Reapplied) {
    if ledger.did_anything() {
        println!(
            "the erasure ledger ({} records): {} documents erased again, {} bodies deleted, {} \
             records written again",
            ledger.records,
            ledger.erased.len(),
            ledger.bodies,
            ledger.rewritten
        );
    }
    if ledger.wrong_key
        && let Some(why) = ledger.unreadable()
    {
        println!("the erasure ledger was not re-applied: {why}");
    }
    for id in &ledger.refused {
        println!(
            "the erasure ledger's record for {id} was not sealed by this vault, or does not \
             describe the document: it erased nothing"
        );
    }
}
