//! A citizen's requests under Law 91/2025 and Decree 356/2025: filed by the citizen (signed in)
//! or by a clerk at the desk on their behalf, with the legal deadlines counted in working days,
//! every step logged. Carrying one out does what it asks: an erasure erases what no hold or
//! retention rule keeps; a restriction, objection or withdrawal of consent stops grants.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::calendar::Holidays;
use super::{Vault, entry, refuse, require_role};
use crate::audit::{AuditAction, Entry};
use crate::auth::Caller;
use crate::db::requests::{self as store, RequestRow};
use crate::db::restrictions::{self, RestrictionRow};
use crate::db::{documents, now_ms};
use crate::domain::{
    DocStatus, NationalId, RequestKind, RequestState, Role, format_rfc3339, parse_text,
};
use crate::error::ApiError;

/// The deadlines, each a setting, counted in working days.
#[derive(Clone, Debug)]
pub struct Deadlines {
    pub holidays: Holidays,
    /// The first answer (the request leaves `received`).
    pub answer_days: u32,
    /// Carried out or refused.
    pub carry_out_days: u32,
    /// What one extension adds.
    pub extension_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRequest {
    pub kind: RequestKind,
    /// The document it is about, if one (a correction, an erasure of one paper).
    pub document_id: Option<Uuid>,
    /// A clerk filing for a citizen at the desk says they checked the citizen's CCCD.
    #[serde(default)]
    pub identity_checked: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub state: RequestState,
    /// Required to extend (why) and to refuse (the legal reason).
    pub reason: Option<String>,
    /// For a correction carried out: the corrected document, taken in to supersede the old.
    pub document_id: Option<Uuid>,
}

/// A request as the console shows it. The citizen is named as the audit log names them.
#[derive(Debug, Serialize)]
pub struct RequestView {
    pub id: Uuid,
    pub citizen: String,
    pub kind: RequestKind,
    pub document_id: Option<Uuid>,
    pub filed_by: String,
    pub filed_role: Role,
    pub received_at: String,
    pub answer_due: String,
    pub due: String,
    pub state: RequestState,
    pub reason: Option<String>,
    pub extended: bool,
    pub overdue: bool,
    pub closed_at: Option<String>,
    /// What carrying out an erasure did: the documents erased, and those kept with why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ErasureOutcome>,
}

#[derive(Debug, Default, Serialize)]
pub struct ErasureOutcome {
    pub erased: Vec<Uuid>,
    pub kept: Vec<Kept>,
}

#[derive(Debug, Serialize)]
pub struct Kept {
    pub document_id: Uuid,
    pub reason: String,
}

impl RequestView {
    pub(super) fn of(q: &RequestRow, now: i64) -> Self {
        Self {
            id: q.id,
            citizen: super::access::citizen_actor(&q.citizen_idx),
            kind: q.kind,
            document_id: q.document_id,
            filed_by: q.filed_by.clone(),
            filed_role: q.filed_role,
            received_at: format_rfc3339(q.received_at),
            answer_due: format_rfc3339(q.answer_due_at),
            due: format_rfc3339(q.due_at),
            state: q.state,
            reason: q.state_reason.clone(),
            extended: q.extended,
            overdue: q.overdue(now),
            closed_at: q.closed_at.map(format_rfc3339),
            outcome: None,
        }
    }
}

/// Files a request for the citizen `national_id`: the citizen themself, or a clerk who checked
/// their CCCD at the desk.
pub async fn file(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
    req: FileRequest,
) -> Result<RequestView, ApiError> {
    let keys = vault.keys();
    let citizen = keys.citizen_index(national_id)?;
    let mut e = entry(caller, AuditAction::RequestFile);
    e.citizen_idx = Some(citizen);
    require_role(vault, &e, caller, &[Role::Citizen, Role::Clerk]).await?;
    super::require_own_records(vault, &e, caller, national_id, "requests").await?;
    if caller.role == Role::Clerk && !req.identity_checked {
        return Err(ApiError::InvalidRequest(
            "check the citizen's CCCD against them first, then say so (identity_checked)".into(),
        ));
    }
    if let Some(id) = req.document_id {
        let theirs = documents::get(&vault.db.pool, id)
            .await?
            .is_some_and(|d| d.citizen_idx == citizen);
        if !theirs {
            return Err(refuse(vault, e, ApiError::NotFound).await);
        }
    }
    let now = now_ms();
    let d = &vault.deadlines;
    let row = RequestRow {
        id: Uuid::now_v7(),
        citizen_idx: citizen,
        kind: req.kind,
        document_id: req.document_id,
        filed_by: e.actor.clone(),
        filed_role: caller.role,
        filed_office: caller.office.clone(),
        received_at: now,
        answer_due_at: d.holidays.due(now, d.answer_days),
        due_at: d.holidays.due(now, d.carry_out_days),
        state: RequestState::Received,
        state_reason: None,
        answered_at: None,
        extended: false,
        closed_at: None,
        updated_by: e.actor.clone(),
        updated_at: now,
    };
    e.case_ref = Some(row.id.to_string());
    e.document_id = row.document_id.map(|d| d.to_string());
    e.reason = Some(format!("request {}", row.kind));
    let view = RequestView::of(&row, now);
    vault
        .change(move |tx| {
            Box::pin(async move {
                store::insert(tx, &row).await?;
                Ok((Some(e), ()))
            })
        })
        .await?;
    Ok(view)
}

/// The open requests, the nearest deadline each still has first (clerks and auditors).
pub async fn queue(vault: &Vault, caller: &Caller) -> Result<Vec<RequestView>, ApiError> {
    let e = entry(caller, AuditAction::RequestList);
    require_role(vault, &e, caller, &[Role::Clerk, Role::Auditor]).await?;
    let rows = store::open(&vault.db.pool, 500).await?;
    vault.record(e).await?;
    let now = now_ms();
    Ok(rows.iter().map(|q| RequestView::of(q, now)).collect())
}

/// A citizen's requests: the citizen's own, or any citizen's for a clerk or auditor.
pub async fn for_citizen(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
) -> Result<Vec<RequestView>, ApiError> {
    let keys = vault.keys();
    let citizen = keys.citizen_index(national_id)?;
    let mut e = entry(caller, AuditAction::RequestList);
    e.citizen_idx = Some(citizen);
    require_role(
        vault,
        &e,
        caller,
        &[Role::Citizen, Role::Clerk, Role::Auditor],
    )
    .await?;
    super::require_own_records(vault, &e, caller, national_id, "requests").await?;
    let rows = store::for_citizen(&vault.db.pool, &citizen, 200).await?;
    vault.record(e).await?;
    let now = now_ms();
    Ok(rows.iter().map(|q| RequestView::of(q, now)).collect())
}

/// Moves a request on (a clerk): answered (`in_progress`), `extended` once with a reason,
/// `refused` with the legal reason, or `done`, which carries it out.
pub async fn update(
    vault: &Vault,
    caller: &Caller,
    id: Uuid,
    req: UpdateRequest,
) -> Result<RequestView, ApiError> {
    let mut e = entry(caller, AuditAction::RequestUpdate);
    e.case_ref = Some(id.to_string());
    require_role(vault, &e, caller, &[Role::Clerk]).await?;
    let Some(was) = store::get(&vault.db.pool, id).await? else {
        return Err(refuse(vault, e, ApiError::NotFound).await);
    };
    e.citizen_idx = Some(was.citizen_idx);
    e.document_id = was.document_id.map(|d| d.to_string());
    let now = now_ms();
    let next = next_state(vault, &was, &req, &e.actor, now)?;
    let outcome = if next.state == RequestState::Done {
        match carry_out(vault, caller, &was, &req, &mut e).await {
            Ok(outcome) => outcome,
            Err(err) => return Err(refuse(vault, e, err).await),
        }
    } else {
        None
    };
    e.reason = Some(match &next.state_reason {
        Some(why) => format!("{}: {why}", next.state),
        None => next.state.to_string(),
    });
    let (was_row, next_row) = (was.clone(), next.clone());
    let restriction =
        (next.state == RequestState::Done && was.kind.restricts()).then(|| RestrictionRow {
            // Named by the request that placed it (one each).
            id: was.id,
            citizen_idx: was.citizen_idx,
            request_id: was.id,
            placed_by: e.actor.clone(),
            placed_at: now,
            lifted_by: None,
            lifted_at: None,
        });
    vault
        .change(move |tx| {
            Box::pin(async move {
                if !store::update(tx, &was_row, &next_row).await? {
                    return Err(ApiError::Conflict(
                        "the request changed meanwhile; reload".into(),
                    ));
                }
                if let Some(r) = &restriction {
                    restrictions::insert(tx, r).await?;
                }
                Ok((Some(e), ()))
            })
        })
        .await?;
    let mut view = RequestView::of(&next, now);
    view.outcome = outcome;
    Ok(view)
}

/// The request as it will be after `req`, or why that move is not allowed.
fn next_state(
    vault: &Vault,
    was: &RequestRow,
    req: &UpdateRequest,
    by: &str,
    now: i64,
) -> Result<RequestRow, ApiError> {
    if !was.state.is_open() {
        return Err(ApiError::Conflict(format!(
            "the request is {} already",
            was.state
        )));
    }
    let reason = req
        .reason
        .as_deref()
        .map(|r| parse_text(r, "reason", 500))
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let mut next = was.clone();
    next.state = req.state;
    next.updated_by = by.to_owned();
    next.updated_at = now.max(was.updated_at + 1);
    next.answered_at = was.answered_at.or(Some(now));
    next.state_reason = reason.clone();
    match req.state {
        RequestState::Received => {
            return Err(ApiError::InvalidRequest(
                "a request cannot go back to received".into(),
            ));
        }
        RequestState::InProgress => {}
        RequestState::Extended if was.extended => {
            return Err(ApiError::Conflict(
                "a request may be extended once only".into(),
            ));
        }
        RequestState::Extended | RequestState::Refused if reason.is_none() => {
            return Err(ApiError::InvalidRequest(
                "say why: an extension needs its reason, a refusal its legal reason".into(),
            ));
        }
        RequestState::Extended => {
            next.extended = true;
            let d = &vault.deadlines;
            next.due_at = d.holidays.due(was.due_at, d.extension_days);
        }
        RequestState::Refused | RequestState::Done => next.closed_at = Some(now),
    }
    Ok(next)
}

/// Does what a request asks, before it is marked done.
async fn carry_out(
    vault: &Vault,
    caller: &Caller,
    was: &RequestRow,
    req: &UpdateRequest,
    e: &mut Entry,
) -> Result<Option<ErasureOutcome>, ApiError> {
    match was.kind {
        RequestKind::Erase if was.filed_role == Role::Clerk && was.filed_by == e.actor => {
            // Four eyes: an erasure filed at the desk is carried out by another clerk.
            Err(ApiError::Forbidden(
                "another clerk carries out an erasure you filed for a citizen".into(),
            ))
        }
        RequestKind::Erase => Ok(Some(erase_for(vault, caller, was).await?)),
        RequestKind::Correct => {
            let corrected = req.document_id.ok_or_else(|| {
                ApiError::InvalidRequest(
                    "take the corrected document in (superseding the old one) and name it in \
                     document_id"
                        .into(),
                )
            })?;
            let doc = documents::get(&vault.db.pool, corrected).await?;
            let fits = doc.is_some_and(|d| {
                d.citizen_idx == was.citizen_idx && d.supersedes.is_some() && d.status.is_current()
            });
            if !fits {
                return Err(ApiError::InvalidRequest(
                    "document_id must be the citizen's current document that supersedes the \
                     one corrected"
                        .into(),
                ));
            }
            e.document_id = Some(corrected.to_string());
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Carries out an erasure request: every document it covers (the one named, or all of the
/// citizen's) that no hold and no retention rule keeps is erased; the others are listed with
/// the reason they are kept.
async fn erase_for(
    vault: &Vault,
    caller: &Caller,
    was: &RequestRow,
) -> Result<ErasureOutcome, ApiError> {
    let rows = documents::list_for_citizen(&vault.db.pool, &was.citizen_idx, true).await?;
    let now = now_ms();
    let mut outcome = ErasureOutcome::default();
    let why = super::erasure::Why {
        reason: crate::domain::EraseReason::CitizenRequest,
        detail: format!("request {}", was.id),
    };
    for doc in rows
        .iter()
        .filter(|d| d.status != DocStatus::Erased)
        .filter(|d| was.document_id.is_none_or(|only| only == d.id))
    {
        if let Some(reason) = super::retention::kept_by(vault, doc, now).await? {
            outcome.kept.push(Kept {
                document_id: doc.id,
                reason,
            });
            continue;
        }
        let by = entry(caller, AuditAction::DocumentErase);
        match super::erasure::erase(vault, doc.id, &why, by).await? {
            super::erasure::Fate::Held { reason, .. } => outcome.kept.push(Kept {
                document_id: doc.id,
                reason,
            }),
            _ => outcome.erased.push(doc.id),
        }
    }
    if !outcome.erased.is_empty() {
        vault.db.purge_freed().await;
    }
    Ok(outcome)
}

/// Lifts a restriction (a clerk, when the citizen asks or the ground for it ends).
pub async fn lift_restriction(vault: &Vault, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    let mut e = entry(caller, AuditAction::RestrictionLift);
    require_role(vault, &e, caller, &[Role::Clerk]).await?;
    let Some(r) = restrictions::get(&vault.db.pool, id).await? else {
        return Err(refuse(vault, e, ApiError::NotFound).await);
    };
    e.citizen_idx = Some(r.citizen_idx);
    e.case_ref = Some(r.request_id.to_string());
    e.reason = Some(format!("restriction {id}"));
    let by = e.actor.clone();
    vault
        .change(move |tx| {
            Box::pin(async move {
                if !restrictions::lift(tx, id, &by, now_ms()).await? {
                    return Err(ApiError::Conflict(
                        "the restriction was lifted already".into(),
                    ));
                }
                Ok((Some(e), ()))
            })
        })
        .await
}

/// The error a restriction in force on `citizen` answers with (the caller refuses with it, and
/// [`super::refuse`] logs which restriction it was), or Ok.
pub async fn unrestricted(
    vault: &Vault,
    citizen: &crate::crypto::CitizenIndex,
) -> Result<(), ApiError> {
    match restrictions::in_force(&vault.db.pool, citizen).await? {
        None => Ok(()),
        Some(r) => Err(restricted(&restrictions::InForce {
            request_id: r.request_id,
            placed_at: r.placed_at,
        })),
    }
}

/// The error a restriction in force answers with.
pub fn restricted(r: &restrictions::InForce) -> ApiError {
    ApiError::Restricted(format!(
        "restriction {} since {}",
        r.request_id,
        format_rfc3339(r.placed_at)
    ))
}

/// [`unrestricted`], refused and logged with `e` when a restriction is in force.
pub async fn require_unrestricted(
    vault: &Vault,
    e: &Entry,
    citizen: &crate::crypto::CitizenIndex,
) -> Result<(), ApiError> {
    match unrestricted(vault, citizen).await {
        Err(err @ ApiError::Restricted(_)) => Err(refuse(vault, e.clone(), err).await),
        other => other,
    }
}
