//! Legal holds: an admin or auditor keeps a citizen's documents, or one document, from being
//! erased (by retention or by request) while a case needs them; lifting a hold is logged too.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::access::citizen_actor;
use super::{Vault, entry, refuse, require_role};
use crate::audit::AuditAction;
use crate::auth::Caller;
use crate::db::holds::{self as store, HoldRow};
use crate::db::{documents, now_ms};
use crate::domain::{Code, NationalId, Role, format_rfc3339, parse_rfc3339, parse_text};
use crate::error::ApiError;

/// Who may place, lift and list holds.
const HOLDERS: &[Role] = &[Role::Admin, Role::Auditor];

/// A hold as asked for: on a citizen (`national_id`) or one document (`document_id`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub national_id: Option<String>,
    pub document_id: Option<Uuid>,
    pub reason: String,
    pub case_ref: String,
    /// RFC 3339; none: until lifted.
    pub until: Option<String>,
}

/// A hold as an auditor sees it. The citizen is named as in the audit log.
#[derive(Debug, Serialize)]
pub struct HoldView {
    pub id: Uuid,
    pub citizen: String,
    pub document_id: Option<Uuid>,
    pub reason: String,
    pub case_ref: String,
    pub placed_by: String,
    pub placed_office: String,
    pub placed_at: String,
    pub until: Option<String>,
    pub lifted_by: Option<String>,
    pub lifted_at: Option<String>,
    pub in_force: bool,
}

impl HoldView {
    fn of(h: &HoldRow, now: i64) -> Self {
        Self {
            id: h.id,
            citizen: citizen_actor(&h.citizen_idx),
            document_id: h.document_id,
            reason: h.reason.clone(),
            case_ref: h.case_ref.clone(),
            placed_by: h.placed_by.clone(),
            placed_office: h.placed_office.clone(),
            placed_at: format_rfc3339(h.placed_at),
            until: h.until_at.map(format_rfc3339),
            lifted_by: h.lifted_by.clone(),
            lifted_at: h.lifted_at.map(format_rfc3339),
            in_force: h.in_force(now),
        }
    }
}

fn invalid(e: crate::domain::DomainError) -> ApiError {
    ApiError::InvalidRequest(e.to_string())
}

pub async fn place(vault: &Vault, caller: &Caller, req: HoldRequest) -> Result<HoldView, ApiError> {
    let keys = vault.keys();
    let mut e = entry(caller, AuditAction::HoldPlace);
    require_role(vault, &e, caller, HOLDERS).await?;
    let now = now_ms();
    let reason = parse_text(&req.reason, "reason", 500).map_err(invalid)?;
    let case_ref = Code::parse(&req.case_ref, "case_ref").map_err(invalid)?;
    let until = req
        .until
        .as_deref()
        .map(|u| parse_rfc3339(u, "until"))
        .transpose()
        .map_err(invalid)?;
    if until.is_some_and(|u| u <= now) {
        return Err(ApiError::InvalidRequest(
            "until must be in the future (leave it out for a hold until lifted)".into(),
        ));
    }
    let (citizen_idx, document_id) = match (&req.national_id, req.document_id) {
        (Some(nid), None) => (keys.citizen_index(&NationalId::parse(nid)?)?, None),
        (None, Some(id)) => match documents::get(&vault.db.pool, id).await? {
            Some(doc) => (doc.citizen_idx, Some(id)),
            None => return Err(refuse(vault, e, ApiError::NotFound).await),
        },
        _ => {
            return Err(ApiError::InvalidRequest(
                "name either national_id (a hold on all of a citizen's documents) or \
                 document_id (one document), not both"
                    .into(),
            ));
        }
    };
    let hold = HoldRow {
        id: Uuid::now_v7(),
        citizen_idx,
        document_id,
        reason: reason.clone(),
        case_ref: case_ref.to_string(),
        placed_by: caller.staff_or_none().to_owned(),
        placed_office: caller.office.clone(),
        placed_at: now,
        until_at: until,
        lifted_by: None,
        lifted_at: None,
    };
    e.citizen_idx = Some(citizen_idx);
    e.document_id = document_id.map(|d| d.to_string());
    e.case_ref = Some(hold.case_ref.clone());
    e.reason = Some(reason);
    let view = HoldView::of(&hold, now);
    vault
        .change(move |tx| {
            Box::pin(async move {
                store::insert(tx, &hold).await?;
                Ok((Some(e), ()))
            })
        })
        .await?;
    Ok(view)
}

pub async fn lift(vault: &Vault, caller: &Caller, id: Uuid) -> Result<HoldView, ApiError> {
    let mut e = entry(caller, AuditAction::HoldLift);
    require_role(vault, &e, caller, HOLDERS).await?;
    let Some(mut hold) = store::get(&vault.db.pool, id).await? else {
        return Err(refuse(vault, e, ApiError::NotFound).await);
    };
    e.citizen_idx = Some(hold.citizen_idx);
    e.document_id = hold.document_id.map(|d| d.to_string());
    e.case_ref = Some(hold.case_ref.clone());
    e.reason = Some(format!("hold {id}"));
    if hold.lifted_at.is_some() {
        return Err(refuse(
            vault,
            e,
            ApiError::Conflict("the hold was lifted already".into()),
        )
        .await);
    }
    let (by, now) = (caller.staff_or_none().to_owned(), now_ms());
    let who = by.clone();
    vault
        .change(move |tx| {
            Box::pin(async move {
                if !store::lift(tx, id, &who, now).await? {
                    return Err(ApiError::Conflict("the hold was lifted meanwhile".into()));
                }
                Ok((Some(e), ()))
            })
        })
        .await?;
    hold.lifted_by = Some(by);
    hold.lifted_at = Some(now);
    Ok(HoldView::of(&hold, now))
}

/// The holds in force, or all (`all`), newest first.
pub async fn list(vault: &Vault, caller: &Caller, all: bool) -> Result<Vec<HoldView>, ApiError> {
    let e = entry(caller, AuditAction::HoldList);
    require_role(vault, &e, caller, HOLDERS).await?;
    let now = now_ms();
    let holds = store::list(&vault.db.pool, now, !all, 500).await?;
    vault.record(e).await?;
    Ok(holds.iter().map(|h| HoldView::of(h, now)).collect())
}
