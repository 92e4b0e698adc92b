//! Erasing a document, and re-applying the erasure ledger.
//!
//! One erasure, in an order that is safe against a crash at any instant:
//!
//! 1. the ledger record is written (the object store, outside the database): from here on,
//!    start-up, `hoso doctor`, `hoso restore` and every retention run finish the erasure;
//! 2. one transaction empties the wrapped data key and the sealed fields (the document's
//!    secrets: without its data key its body is noise), leaves the tombstone, and appends the
//!    `document.erase` entry; a hold in force, checked in the same transaction, stops it;
//! 3. the body object is deleted, and the tombstone says so.
//!
//! A crash before 2 leaves the document whole and its ledger record waiting; after 2, it is
//! unreadable and its body waits for 3. Re-applying is the same three steps, each idempotent.

use uuid::Uuid;

use super::Vault;
use super::ledger::{self, Record};
use crate::audit::{AuditAction, Entry, Outcome};
use crate::db::documents::{self, DocumentRow};
use crate::db::erasure::{self as store, Erased};
use crate::db::now_ms;
use crate::domain::{DocStatus, EraseReason, format_rfc3339};
use crate::error::ApiError;

/// Why and on whose word a document is erased.
#[derive(Clone, Debug)]
pub struct Why {
    pub reason: EraseReason,
    /// The rule, request or order, in words (a court order's or request's reference).
    pub detail: String,
}

impl Why {
    /// As the tombstone and the audit entry say it: `reason: detail`.
    fn text(&self) -> String {
        format!("{}: {}", self.reason, self.detail)
    }

    /// Reads back what [`Why::text`] wrote.
    fn parse(text: &str) -> Option<Self> {
        let (reason, detail) = text.split_once(": ")?;
        Some(Self {
            reason: reason.parse().ok()?,
            detail: detail.to_owned(),
        })
    }
}

/// What became of one document.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    Erased,
    /// Kept: a hold in force covers it (the hold's id, reason and reference).
    Held {
        hold: Uuid,
        reason: String,
    },
    AlreadyErased,
    NotFound,
}

/// Erases document `id` for `why`, as `by` (the entry to log it with: actor, role, office).
/// A hold in force is a refusal, logged with the hold.
pub async fn erase(vault: &Vault, id: Uuid, why: &Why, by: Entry) -> Result<Fate, ApiError> {
    let now = now_ms();
    let Some(doc) = documents::get(&vault.db.pool, id).await? else {
        return Ok(Fate::NotFound);
    };
    let mut e = by;
    e.action = AuditAction::DocumentErase;
    e.document_id = Some(id.to_string());
    e.citizen_idx = Some(doc.citizen_idx);
    e.reason = Some(why.text());
    if doc.status == DocStatus::Erased {
        finish(vault, &doc).await?;
        return Ok(Fate::AlreadyErased);
    }
    if let Some(hold) = crate::db::holds::holding(&vault.db.pool, id, now).await? {
        return refused(vault, e, &hold).await;
    }
    ledger::put(&vault.blobs, &record(&doc, why, &e.actor, now)).await?;
    apply(vault, &doc, e, now).await
}

/// Step 2 and 3 for a document whose ledger record is written.
async fn apply(vault: &Vault, doc: &DocumentRow, e: Entry, now: i64) -> Result<Fate, ApiError> {
    let (id, by, why) = (
        doc.id,
        e.actor.clone(),
        e.reason.clone().unwrap_or_default(),
    );
    let denied = e.clone();
    let erased = vault
        .change(move |tx| {
            Box::pin(async move {
                match store::erase(tx, id, now, &by, &why).await? {
                    Erased::Done => Ok((Some(e), None)),
                    Erased::Held(hold) => Ok((None, Some(hold))),
                    Erased::Already | Erased::Missing => Ok((None, None)),
                }
            })
        })
        .await?;
    if let Some(hold) = erased {
        // A hold placed since the check above: it wins, and the refusal is logged.
        return refused(vault, denied, &hold).await;
    }
    finish(vault, doc).await?;
    Ok(Fate::Erased)
}

async fn refused(
    vault: &Vault,
    mut e: Entry,
    hold: &crate::db::holds::HoldRow,
) -> Result<Fate, ApiError> {
    let why = format!(
        "legal hold {} ({}): {}",
        hold.id, hold.case_ref, hold.reason
    );
    e.outcome = Outcome::Denied;
    e.reason = Some(format!("legal_hold: {why}"));
    vault.record(e).await?;
    Ok(Fate::Held {
        hold: hold.id,
        reason: why,
    })
}

/// Step 3: the body deleted and the tombstone told.
async fn finish(vault: &Vault, doc: &DocumentRow) -> Result<(), ApiError> {
    vault.blobs.delete(&doc.object_key).await?;
    store::body_deleted(&vault.db.pool, doc.id, now_ms()).await?;
    Ok(())
}

fn record(doc: &DocumentRow, why: &Why, by: &str, at: i64) -> Record {
    Record {
        document_id: doc.id,
        doc_type: doc.doc_type,
        citizen_idx: doc.citizen_idx.to_hex(),
        erased_at: format_rfc3339(at),
        reason: why.reason,
        detail: why.detail.clone(),
        by: by.to_owned(),
    }
}

/// Where a re-application reads the ledger from.
pub enum Source {
    /// The object store this vault uses.
    Live,
    /// The live store's, and a file `hoso retention ledger export` wrote (a restore into a
    /// fresh place, whose store is the backup's).
    Exported(Vec<Record>),
}

/// What a re-application did.
#[derive(Debug, Default)]
pub struct Reapplied {
    /// Records in the ledger.
    pub records: usize,
    /// Documents the database still held whole, now erased.
    pub erased: Vec<Uuid>,
    /// Documents the ledger names that a hold in force keeps (erased once it is lifted).
    pub held: Vec<Uuid>,
    /// Bodies deleted that an erasure had left (a crash between its steps).
    pub bodies: usize,
    /// Tombstones the live ledger had lost, written to it again.
    pub rewritten: usize,
}

/// Finishes every erasure the ledger holds: a document the database still holds whole (a
/// restored backup, or a crash before its transaction) is erased, a body left behind is
/// deleted, and a tombstone whose record the live ledger lost is written to it again.
pub async fn reapply(vault: &Vault, source: Source) -> Result<Reapplied, ApiError> {
    let mut ids = ledger::erased_ids(&vault.blobs).await?;
    let records = match source {
        Source::Live => None,
        Source::Exported(records) => {
            ids.extend(records.iter().map(|r| r.document_id));
            ids.sort();
            ids.dedup();
            Some(records)
        }
    };
    let tombstones = store::erased_ids(&vault.db.pool).await?;
    let mut done = Reapplied {
        records: ids.len(),
        ..Reapplied::default()
    };
    for id in ids
        .iter()
        .filter(|id| tombstones.binary_search(id).is_err())
    {
        let record = match &records {
            Some(records) => records.iter().find(|r| r.document_id == *id).cloned(),
            None => None,
        };
        match reapply_one(vault, *id, record).await? {
            Fate::Erased => done.erased.push(*id),
            Fate::Held { .. } => done.held.push(*id),
            Fate::AlreadyErased | Fate::NotFound => {}
        }
    }
    done.rewritten = rewrite_lost_records(vault, &ids, &tombstones).await?;
    for (id, key) in store::bodies_to_delete(&vault.db.pool).await? {
        vault.blobs.delete(&key).await?;
        store::body_deleted(&vault.db.pool, id, now_ms()).await?;
        done.bodies += 1;
    }
    if !done.erased.is_empty() || done.bodies > 0 || done.rewritten > 0 {
        tracing::warn!(
            erased = done.erased.len(),
            bodies = done.bodies,
            rewritten = done.rewritten,
            held = done.held.len(),
            "re-applied the erasure ledger"
        );
    }
    Ok(done)
}

/// One ledger record whose document the database does not hold as a tombstone.
async fn reapply_one(vault: &Vault, id: Uuid, record: Option<Record>) -> Result<Fate, ApiError> {
    let Some(doc) = documents::get(&vault.db.pool, id).await? else {
        // Not in this database (a backup older than the document): its body may be.
        vault
            .blobs
            .delete(&crate::blob::BlobStore::key_for(id))
            .await?;
        return Ok(Fate::NotFound);
    };
    let record = match record {
        Some(r) => r,
        None => {
            let bytes = vault
                .blobs
                .get_all(&format!("{}/{id}", ledger::PREFIX))
                .await?;
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::Integrity(format!("the erasure ledger's record for {id}: {e}"))
            })?
        }
    };
    let why = Why {
        reason: record.reason,
        detail: format!("{} (re-applied from the erasure ledger)", record.detail),
    };
    let mut e = Entry::operator(AuditAction::DocumentErase);
    e.actor = "hoso-ledger".into();
    e.document_id = Some(id.to_string());
    e.citizen_idx = Some(doc.citizen_idx);
    e.reason = Some(why.text());
    let now = now_ms();
    if let Some(hold) = crate::db::holds::holding(&vault.db.pool, id, now).await? {
        return refused(vault, e, &hold).await;
    }
    if !ledger::holds(&vault.blobs, id).await? {
        // From an exported copy: the live ledger gets the record too.
        ledger::put(&vault.blobs, &record).await?;
    }
    apply(vault, &doc, e, now).await
}

/// Tombstones with no record in the ledger `ids`: someone removed it from the store. Written
/// again from the tombstone (the audit log, which checkpoints cover, has the erasure too).
async fn rewrite_lost_records(
    vault: &Vault,
    ids: &[Uuid],
    tombstones: &[Uuid],
) -> Result<usize, ApiError> {
    let mut rewritten = 0;
    for id in tombstones.iter().filter(|t| ids.binary_search(t).is_err()) {
        if ledger::holds(&vault.blobs, *id).await? {
            continue;
        }
        let Some(doc) = documents::get(&vault.db.pool, *id).await? else {
            continue;
        };
        let why = doc
            .erase_reason
            .as_deref()
            .and_then(Why::parse)
            .unwrap_or(Why {
                reason: EraseReason::Retention,
                detail: "reason not recorded".into(),
            });
        let by = doc.erased_by.clone().unwrap_or_default();
        let at = doc.erased_at.unwrap_or_default();
        tracing::warn!(document = %id, "the erasure ledger had lost this erasure; written again");
        ledger::put(&vault.blobs, &record(&doc, &why, &by, at)).await?;
        rewritten += 1;
    }
    Ok(rewritten)
}

/// An erasure asked for over the API: a citizen's request (Law 91/2025) or a court order,
/// with its reference.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    pub reason: EraseReason,
    pub reference: String,
}

/// What an erasure answers: the document's id and its status now.
#[derive(Debug, serde::Serialize)]
pub struct ErasedAnswer {
    pub id: Uuid,
    pub status: &'static str,
}

/// `POST /v1/documents/{id}/erase`, for an admin. Retention is not asked for: it runs by its
/// rules. A hold in force is a 409 `legal_hold` naming it.
pub async fn erase_document(
    vault: &Vault,
    caller: &crate::auth::Caller,
    id: Uuid,
    req: EraseRequest,
) -> Result<ErasedAnswer, ApiError> {
    let keys = vault.keys();
    let mut e = super::entry(&keys, caller, AuditAction::DocumentErase);
    e.document_id = Some(id.to_string());
    super::require_role(vault, &e, caller, &[crate::domain::Role::Admin]).await?;
    let reference = crate::domain::parse_text(&req.reference, "reference", 200)
        .map_err(|err| ApiError::InvalidRequest(err.to_string()))?;
    if req.reason == EraseReason::Retention {
        return Err(ApiError::InvalidRequest(
            "retention erases by its rules (hoso retention run); ask with citizen_request or \
             court_order"
                .into(),
        ));
    }
    e.case_ref = Some(reference.clone());
    let why = Why {
        reason: req.reason,
        detail: reference,
    };
    match erase(vault, id, &why, e.clone()).await? {
        Fate::Erased | Fate::AlreadyErased => {
            vault.db.purge_freed().await;
            Ok(ErasedAnswer {
                id,
                status: DocStatus::Erased.as_str(),
            })
        }
        Fate::Held { reason, .. } => Err(ApiError::LegalHold(reason)),
        Fate::NotFound => Err(super::refuse(vault, e, ApiError::NotFound).await),
    }
}
