//! Changing a document's status: verify (signing its attestation) and revoke. Both go through
//! [`audited_change`], so each change and its audit entry commit together or not at all. A
//! request that changes nothing (verify a verified document, revoke a revoked one) is logged
//! too, before it is answered: every answer is in the log, and fails closed with it.

use uuid::Uuid;

use super::{DocumentView, Vault, attest, entry, refuse, require_role, view};
use futures_util::future::BoxFuture;

use crate::audit::{AuditAction, Entry};
use crate::auth::Caller;
use crate::db::documents::{self, DocumentRow};
use crate::db::{DbError, Tx, now_ms};
use crate::domain::{DocStatus, Role};
use crate::error::ApiError;

/// Loads the document a status change is about, refusing (and logging) an unknown id.
async fn target(vault: &Vault, e: &mut Entry, id: Uuid) -> Result<DocumentRow, ApiError> {
    let Some(doc) = documents::get(&vault.db.pool, id).await? else {
        return Err(refuse(vault, e.clone(), ApiError::NotFound).await);
    };
    e.citizen_idx = Some(doc.citizen_idx);
    Ok(doc)
}

/// Runs `change` (a conditional update that says whether it applied) with the entry `e` in one
/// audited transaction. A change that no longer applies means another request won the race.
async fn audited_change<F>(vault: &Vault, e: Entry, change: F) -> Result<(), ApiError>
where
    F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<bool, DbError>> + Send + 'static,
{
    vault
        .change(move |tx| {
            Box::pin(async move {
                if !change(tx).await? {
                    return Err(ApiError::Conflict(
                        "the document changed meanwhile; retry".into(),
                    ));
                }
                Ok((Some(e), ()))
            })
        })
        .await
}

pub async fn verify_document(
    vault: &Vault,
    caller: &Caller,
    id: Uuid,
) -> Result<DocumentView, ApiError> {
    let keys = vault.keys();
    let mut e = entry(caller, AuditAction::DocumentVerify);
    e.document_id = Some(id.to_string());
    require_role(vault, &e, caller, &[Role::Clerk]).await?;
    let mut doc = target(vault, &mut e, id).await?;
    match doc.status {
        DocStatus::Verified => {
            e.reason = Some("already verified".into());
            vault.record(e).await?;
            return view(vault, &doc);
        }
        DocStatus::Pending => {}
        other => {
            return Err(refuse(
                vault,
                e,
                ApiError::Conflict(format!("a {other} document cannot be verified")),
            )
            .await);
        }
    }
    let clerk = caller.staff_or_none().to_owned();
    let now = now_ms();
    // What the intake recorded of the card's QR, in the document's sealed fields.
    let card_check = super::fields(vault, &doc)?.card_check;
    let attestation = attest(
        &keys,
        &vault.token_policy.issuer,
        &doc,
        &clerk,
        &caller.office,
        now,
        card_check,
    )?;
    let (by, office, signed) = (clerk.clone(), caller.office.clone(), attestation.clone());
    audited_change(vault, e, move |tx| {
        Box::pin(async move { documents::mark_verified(tx, id, &by, &office, now, &signed).await })
    })
    .await?;
    doc.status = DocStatus::Verified;
    doc.verified_by = Some(clerk);
    doc.verified_office = Some(caller.office.clone());
    doc.verified_at = Some(now);
    doc.attestation = Some(attestation);
    view(vault, &doc)
}

/// What a revoke answers: the document's id and new status, nothing personal (an admin may
/// revoke but not read a citizen's fields).
#[derive(Debug, serde::Serialize)]
pub struct Revoked {
    pub id: Uuid,
    pub status: &'static str,
}

/// Revokes a document. `reason`, when given (the console asks for one), goes into the audit
/// entry, where an auditor reads why.
pub async fn revoke(
    vault: &Vault,
    caller: &Caller,
    id: Uuid,
    reason: Option<&str>,
) -> Result<Revoked, ApiError> {
    let mut e = entry(caller, AuditAction::DocumentRevoke);
    e.document_id = Some(id.to_string());
    require_role(vault, &e, caller, &[Role::Clerk, Role::Admin]).await?;
    let reason = reason
        .map(|r| crate::domain::parse_text(r, "reason", 500))
        .transpose()
        .map_err(|err| ApiError::InvalidRequest(err.to_string()))?;
    let doc = target(vault, &mut e, id).await?;
    if doc.status == DocStatus::Erased {
        return Err(refuse(vault, e, ApiError::Erased).await);
    }
    let answer = Revoked {
        id,
        status: DocStatus::Revoked.as_str(),
    };
    if doc.status == DocStatus::Revoked {
        e.reason = Some("already revoked".into());
        vault.record(e).await?;
        return Ok(answer);
    }
    e.reason = reason;
    let by = caller.staff_or_none().to_owned();
    let now = now_ms();
    let from = [
        DocStatus::Pending,
        DocStatus::Verified,
        DocStatus::Superseded,
    ];
    audited_change(vault, e, move |tx| {
        Box::pin(async move {
            documents::change_status(tx, id, &from, DocStatus::Revoked, &by, now).await
        })
    })
    .await?;
    Ok(answer)
}
