//! Whole-vault checks and clean-up: `hoso doctor` proves every row against its object and the
//! audit chain; `hoso sweep` removes objects no row will ever point to.

use std::time::{Duration, Instant};

use super::Vault;
use crate::crypto::Sha256;
use crate::db::{documents, now_ms};
use crate::error::ApiError;

/// One thing `doctor` found wrong.
#[derive(Debug)]
pub struct Problem {
    pub document_id: String,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct DoctorReport {
    pub documents: u64,
    pub problems: Vec<Problem>,
    pub audit_ok: bool,
    pub audit_entries: i64,
    pub audit_problem: Option<String>,
    /// Grants whose row is not what the vault wrote (seal, or uses against the log).
    pub grants: Vec<crate::audit::verify::GrantProblem>,
    /// Documents marked erased whose erasure the audit log does not hold.
    pub erased_outside: Vec<uuid::Uuid>,
}

impl DoctorReport {
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
            && self.audit_ok
            && self.grants.is_empty()
            && self.erased_outside.is_empty()
    }
}

/// Checks that every document's object is present, authenticates end to end, and has the
/// recorded size and SHA-256; then verifies the audit chain. `progress(done, total)` is called
/// at most every two seconds.
pub async fn doctor(
    vault: &Vault,
    mut progress: impl FnMut(u64, i64),
) -> Result<DoctorReport, ApiError> {
    let total = documents::count(&vault.db.pool).await?;
    let mut report = DoctorReport::default();
    let mut shown = Instant::now();
    let mut pages = documents::AllDocuments::new(&vault.db.pool);
    while let Some(page) = pages.next_page().await? {
        for doc in page {
            if doc.status == crate::domain::DocStatus::Erased {
                // A tombstone: no key, no body (the ledger's re-application saw to that).
                report.documents += 1;
                continue;
            }
            let mut sha = Sha256::default();
            let checked =
                super::read::authenticate_body(vault, &doc, |piece| sha.update(piece)).await;
            let what = match checked {
                Ok(()) if hex::encode(sha.finish()) == doc.sha256 => None,
                Ok(()) => Some("content does not match the recorded SHA-256".to_owned()),
                // A missing object is an integrity error too (see `BlobStore::get`).
                Err(ApiError::Integrity(cause)) => Some(cause),
                Err(other) => return Err(other),
            };
            if let Some(what) = what {
                report.problems.push(Problem {
                    document_id: doc.id.to_string(),
                    what,
                });
            }
            report.documents += 1;
            if shown.elapsed() >= Duration::from_secs(2) {
                progress(report.documents, total);
                shown = Instant::now();
            }
        }
    }
    report.erased_outside = crate::db::erasure::erased_outside_the_vault(&vault.db.pool).await?;
    let chain = super::oversight::verify_all(vault, None).await?;
    // The log itself; the grants it vouches for are reported apart.
    report.audit_ok = chain.first_bad_seq.is_none();
    report.audit_entries = chain.entries;
    report.grants = chain.grants;
    report.audit_problem = chain
        .first_bad_seq
        .map(|seq| format!("entry {seq}: {}", chain.problem.unwrap_or_default()));
    Ok(report)
}

#[derive(Debug, Default)]
pub struct SweepReport {
    /// Objects of intakes that never committed (their intent is older than the grace period),
    /// and how many such intents had no object at all.
    pub abandoned: Abandoned,
    /// Objects that no row and no intake claims, older than the grace period.
    pub orphans: Vec<String>,
    /// Local staging files of writes that were cut off, older than the grace period.
    pub staging_files: Vec<String>,
}

/// Finds (and with `delete`, removes) what no document will ever point to. Anything younger
/// than `grace_ms` is left alone: it may belong to an intake still running in some process.
pub async fn sweep(vault: &Vault, grace_ms: i64, delete: bool) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport {
        abandoned: sweep_abandoned(vault, grace_ms, delete).await?,
        ..SweepReport::default()
    };
    let cutoff = now_ms() - grace_ms;
    for (key, modified) in vault.blobs.list().await? {
        if modified < cutoff && !documents::object_claimed(&vault.db.pool, &key).await? {
            if delete {
                vault.blobs.delete(&key).await?;
            }
            report.orphans.push(key);
        }
    }
    for (path, age) in vault.blobs.local_staging_files() {
        if age > grace_ms {
            if delete {
                std::fs::remove_file(&path)
                    .map_err(|e| ApiError::unavailable("remove staging file", e))?;
            }
            report.staging_files.push(path.display().to_string());
        }
    }
    Ok(report)
}

/// What the intents of intakes that never committed left behind.
#[derive(Debug, Default)]
pub struct Abandoned {
    /// Objects that exist under such an intent's key.
    pub objects: Vec<String>,
    /// Intents whose object was never written (the intake died, or the store failed, first).
    pub intents_without_object: usize,
}

/// The objects of intakes that died between writing the object and committing the row, found
/// through their intents (cheap: no listing), and deleted with `delete`. Only objects that exist
/// are reported; an intent whose object was never written is just cleared. `serve` runs this
/// every ten minutes; it also forgets token revocations that have expired.
pub async fn sweep_abandoned(
    vault: &Vault,
    grace_ms: i64,
    delete: bool,
) -> Result<Abandoned, ApiError> {
    let stale = documents::stale_intents(&vault.db.pool, now_ms() - grace_ms).await?;
    let mut found = Abandoned::default();
    for key in stale {
        let exists = vault.blobs.exists(&key).await?;
        if delete {
            if exists {
                vault.blobs.delete(&key).await?;
            }
            documents::delete_intent(&vault.db.pool, &key).await?;
        }
        if exists {
            found.objects.push(key);
        } else {
            found.intents_without_object += 1;
        }
    }
    if delete {
        if !found.objects.is_empty() || found.intents_without_object > 0 {
            tracing::info!(
                objects = found.objects.len(),
                intents_without_object = found.intents_without_object,
                "swept what intakes that never committed left"
            );
        }
        // Tokens are accepted up to the clock-skew leeway past `exp`; so is their revocation kept.
        let forget_before = now_ms() / 1000 - crate::auth::LEEWAY_SECONDS as i64;
        crate::db::revoked_tokens::forget_expired_revocations(&vault.db.pool, forget_before)
            .await?;
    }
    Ok(found)
}
