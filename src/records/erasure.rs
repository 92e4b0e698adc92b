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
        // Its body, if a crash left it, is the ledger's re-application's to delete.
        return Ok(Fate::AlreadyErased);
    }
    if let Some(hold) = crate::db::holds::holding(&vault.db.pool, id, now).await? {
        return refused(vault, e, &hold).await;
    }
    ledger::put(&vault.blobs, &record(vault, &doc, why, &e.actor, now)).await?;
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
    finish(vault, doc.id).await?;
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

/// Step 3: the body deleted (by the key the vault derives from the id, never one a row names)
/// and the tombstone told.
async fn finish(vault: &Vault, id: Uuid) -> Result<(), ApiError> {
    vault
        .blobs
        .delete(&crate::blob::BlobStore::key_for(id))
        .await?;
    store::body_deleted(&vault.db.pool, id, now_ms()).await?;
    Ok(())
}

fn record(vault: &Vault, doc: &DocumentRow, why: &Why, by: &str, at: i64) -> Record {
    Record {
        document_id: doc.id,
        doc_type: doc.doc_type,
        citizen_idx: doc.citizen_idx.to_hex(),
        erased_at: format_rfc3339(at),
        reason: why.reason,
        detail: why.detail.clone(),
        by: by.to_owned(),
        seal: String::new(),
    }
    .seal(&vault.keys())
}

/// Where a re-application reads the ledger from.
pub enum Source {
    /// The object store this vault uses.
    Live,
    /// The live store's, and a file `hoso retention ledger export` wrote (its seals checked:
    /// a restore into a fresh place, whose store is the backup's).
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
    /// Records this vault did not seal, or that name a document as it is not (another type or
    /// citizen): they erase nothing.
    pub refused: Vec<Uuid>,
    /// Bodies deleted that an erasure had left (a crash between its steps).
    pub bodies: usize,
    /// Tombstones the live ledger had lost, written to it again (the audit log has their
    /// erasure).
    pub rewritten: usize,
    /// `keys/erasure-ledger.key` is not the key that sealed the ledger: nothing was re-applied.
    pub wrong_key: bool,
}

impl Reapplied {
    /// Whether it changed anything (worth saying).
    pub fn did_anything(&self) -> bool {
        !self.erased.is_empty()
            || self.bodies > 0
            || self.rewritten > 0
            || !self.refused.is_empty()
            || self.wrong_key
    }

    /// Why the ledger could not be read whole, if it could not: a vault must not serve then,
    /// for a restored backup could serve what it erased. The key is not the ledger's (a `keys/`
    /// restored without its `erasure-ledger.key`, a new one made in its place), or a record was
    /// refused (someone with the bucket wrote it, or it names the document as it is not).
    pub fn unreadable(&self) -> Option<String> {
        if self.wrong_key {
            return Some(
                "keys/erasure-ledger.key is not the key that sealed it (its check value in the \
                 store, ledger/key-check, differs); put back the erasure-ledger.key that sealed \
                 it (restore keys/ whole)"
                    .into(),
            );
        }
        let first = self.refused.first()?;
        Some(format!(
            "{} of its {} records (the first for document {first}) were not sealed by this \
             vault, or do not describe the document the database holds; `hoso doctor` names \
             each, to be moved out of the store (and kept) once understood",
            self.refused.len(),
            self.records
        ))
    }
}

/// Finishes every erasure the ledger holds: a document the database still holds whole (a
/// restored backup, or a crash before its transaction) is erased, a body left behind is
/// deleted, and a tombstone whose record the live ledger lost is written to it again.
pub async fn reapply(vault: &Vault, source: Source) -> Result<Reapplied, ApiError> {
    // Under another key every record would be refused, and one written again would be sealed
    // with it: nothing is read or written until the key is the ledger's.
    if !ledger::key_is_the_ledgers(&vault.blobs, &vault.keys()).await? {
        tracing::error!("keys/erasure-ledger.key is not the key that sealed the erasure ledger");
        return Ok(Reapplied {
            wrong_key: true,
            ..Reapplied::default()
        });
    }
    let mut ids = ledger::erased_ids(&vault.blobs).await?;
    let exported = match source {
        Source::Live => Vec::new(),
        Source::Exported(records) => records,
    };
    ids.extend(exported.iter().map(|r| r.document_id));
    ids.sort();
    ids.dedup();
    let tombstones = store::erased_ids(&vault.db.pool).await?;
    let mut done = Reapplied {
        records: ids.len(),
        ..Reapplied::default()
    };
    for id in ids
        .iter()
        .filter(|id| tombstones.binary_search(id).is_err())
    {
        let given = exported.iter().find(|r| r.document_id == *id).cloned();
        match reapply_one(vault, *id, given).await? {
            Some(Fate::Erased) => done.erased.push(*id),
            Some(Fate::Held { .. }) => done.held.push(*id),
            Some(Fate::AlreadyErased | Fate::NotFound) => {}
            None => done.refused.push(*id),
        }
    }
    done.rewritten = rewrite_lost_records(vault, &ids, &tombstones).await?;
    done.bodies = delete_left_bodies(vault, &ids).await?;
    if done.did_anything() {
        vault.db.purge_freed().await;
        tracing::warn!(
            erased = done.erased.len(),
            bodies = done.bodies,
            rewritten = done.rewritten,
            held = done.held.len(),
            refused = done.refused.len(),
            "re-applied the erasure ledger"
        );
    }
    Ok(done)
}

/// One ledger record whose document the database does not hold as a tombstone. `None`: the
/// record is not the vault's (unsealed), or does not describe the document the database holds.
async fn reapply_one(
    vault: &Vault,
    id: Uuid,
    given: Option<Record>,
) -> Result<Option<Fate>, ApiError> {
    let keys = vault.keys();
    let record = match given {
        Some(r) => Some(r),
        None => ledger::read(&vault.blobs, &keys, id).await?,
    };
    let Some(record) = record else {
        return Ok(None);
    };
    let Some(doc) = documents::get(&vault.db.pool, id).await? else {
        // Not in this database (a backup older than the document): its body may be.
        vault
            .blobs
            .delete(&crate::blob::BlobStore::key_for(id))
            .await?;
        return Ok(Some(Fate::NotFound));
    };
    if record.citizen_idx != doc.citizen_idx.to_hex() || record.doc_type != doc.doc_type {
        tracing::error!(document = %id, "an erasure ledger record that does not describe its document; it erases nothing");
        return Ok(None);
    }
    if !ledger::holds(&vault.blobs, id).await? {
        // From an exported copy: the live ledger gets it first, so it waits there if a hold
        // keeps the document now.
        ledger::put(&vault.blobs, &record).await?;
    }
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
        return refused(vault, e, &hold).await.map(Some);
    }
    apply(vault, &doc, e, now).await.map(Some)
}

/// Tombstones with no record in the ledger `ids` whose erasure the audit log holds: someone
/// removed the record from the store; it is written again from the tombstone. A tombstone the
/// log does not know of (a row marked erased behind the vault's back) is left to `doctor`.
async fn rewrite_lost_records(
    vault: &Vault,
    ids: &[Uuid],
    tombstones: &[Uuid],
) -> Result<usize, ApiError> {
    let mut rewritten = 0;
    for id in tombstones.iter().filter(|t| ids.binary_search(t).is_err()) {
        if !store::erased_in_log(&vault.db.pool, *id).await? {
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
        ledger::put(&vault.blobs, &record(vault, &doc, &why, &by, at)).await?;
        rewritten += 1;
    }
    Ok(rewritten)
}

/// Bodies of tombstones an erasure left (a crash before its step 3), for documents the ledger
/// names: a row marked erased behind the vault's back deletes nothing.
async fn delete_left_bodies(vault: &Vault, ids: &[Uuid]) -> Result<usize, ApiError> {
    let mut deleted = 0;
    for id in store::bodies_to_delete(&vault.db.pool).await? {
        if ids.binary_search(&id).is_ok() || store::erased_in_log(&vault.db.pool, id).await? {
            finish(vault, id).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// An erasure asked for over the API: a court order, with its reference (a citizen's request
/// goes through the request register).
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

/// `POST /v1/documents/{id}/erase`, for an admin carrying out a court order. A hold in force
/// is a 409 `legal_hold` naming it (the court that ordered the hold lifts it first).
pub async fn erase_document(
    vault: &Vault,
    caller: &crate::auth::Caller,
    id: Uuid,
    req: EraseRequest,
) -> Result<ErasedAnswer, ApiError> {
    let mut e = super::entry(caller, AuditAction::DocumentErase);
    e.document_id = Some(id.to_string());
    super::require_role(vault, &e, caller, &[crate::domain::Role::Admin]).await?;
    let reference = crate::domain::parse_text(&req.reference, "reference", 200)
        .map_err(|err| ApiError::InvalidRequest(err.to_string()))?;
    if req.reason != EraseReason::CourtOrder {
        return Err(ApiError::InvalidRequest(
            "this erases on a court order (court_order); retention erases by its rules (hoso \
             retention run), and a citizen's request goes through the request register, which \
             keeps what a hold or retention rule keeps"
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
