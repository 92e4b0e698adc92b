//! Grants: a clerk lets one officer read one citizen's documents of some types, for one case,
//! for a while, a bounded number of times. The token is only a handle; the row decides.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Vault;
use super::{entry, refuse, require_own_records, require_role};
use crate::audit::AuditAction;
use crate::auth::{self, Caller, TokenRequest};
use crate::db::grants::{self as store, GrantRow, StoredGrant};
use crate::db::now_ms;
use crate::domain::format_rfc3339 as rfc3339;
use crate::domain::{Code, DocType, GrantState, NationalId, Role, parse_text};
use crate::error::ApiError;

/// A stored grant whose seal checks. A row edited outside the vault (its citizen, types,
/// dossier, expiry or limit; its seal removed or copied) is refused as a tampered body is:
/// `integrity_error`, counted, and named in the server's log; it allows nothing.
pub(super) fn open(vault: &Vault, stored: StoredGrant) -> Result<GrantRow, ApiError> {
    stored.open(&vault.keys()).map_err(|e| {
        crate::metrics::Metrics::inc(&vault.metrics.integrity_errors);
        tracing::error!(error = %e, "refused a grant row altered outside the vault");
        ApiError::from(e)
    })
}

/// Longest a grant may live: one working month.
pub const MAX_TTL_SECONDS: i64 = 31 * 24 * 3600;
pub const MAX_USES: i64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub national_id: String,
    pub doc_types: Vec<String>,
    pub case_ref: String,
    pub purpose: String,
    pub grantee: String,
    /// The officer's office code: every read through the grant is logged as from it.
    pub grantee_office: String,
    pub ttl_seconds: i64,
    pub max_uses: i64,
}

#[derive(Debug, Serialize)]
pub struct GrantCreated {
    pub grant_id: Uuid,
    pub token: String,
    /// The console link that signs the officer in with `token` (see
    /// [`super::tokens::sign_in_link`]).
    pub link: String,
    pub expires_at: String,
}

struct ValidGrant {
    national_id: NationalId,
    doc_types: Vec<DocType>,
    case_ref: Code,
    purpose: String,
    grantee: Code,
    grantee_office: Code,
    ttl_seconds: i64,
    max_uses: i64,
}

fn validate(req: GrantRequest) -> Result<ValidGrant, ApiError> {
    let national_id = NationalId::parse(&req.national_id)?;
    if req.doc_types.is_empty() {
        return Err(ApiError::InvalidRequest(
            "doc_types must name at least one type".into(),
        ));
    }
    let mut doc_types = Vec::new();
    for t in &req.doc_types {
        let t = DocType::parse(t)
            .ok_or_else(|| ApiError::InvalidRequest(format!("unknown doc_type {t:?}")))?;
        if !doc_types.contains(&t) {
            doc_types.push(t);
        }
    }
    if !(1..=MAX_TTL_SECONDS).contains(&req.ttl_seconds) {
        return Err(ApiError::InvalidRequest(format!(
            "ttl_seconds must be 1 to {MAX_TTL_SECONDS}"
        )));
    }
    if !(1..=MAX_USES).contains(&req.max_uses) {
        return Err(ApiError::InvalidRequest(format!(
            "max_uses must be 1 to {MAX_USES}"
        )));
    }
    Ok(ValidGrant {
        national_id,
        doc_types,
        case_ref: Code::parse(&req.case_ref, "case_ref")?,
        purpose: parse_text(&req.purpose, "purpose", 500)
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
        grantee: Code::parse(&req.grantee, "grantee")?,
        grantee_office: Code::parse(&req.grantee_office, "grantee_office")?,
        ttl_seconds: req.ttl_seconds,
        max_uses: req.max_uses,
    })
}

pub async fn create(
    vault: &Vault,
    caller: &Caller,
    req: GrantRequest,
) -> Result<GrantCreated, ApiError> {
    let keys = vault.keys();
    let mut e = entry(caller, AuditAction::GrantCreate);
    require_role(vault, &e, caller, &[Role::Clerk]).await?;
    let req = validate(req)?;
    let citizen = keys.citizen_index(&req.national_id)?;
    e.citizen_idx = Some(citizen);
    super::requests::require_unrestricted(vault, &e, &citizen).await?;
    let now = now_ms();
    let grant = GrantRow {
        id: Uuid::now_v7(),
        citizen_idx: citizen,
        doc_types: req.doc_types,
        case_ref: req.case_ref.to_string(),
        purpose: req.purpose,
        grantee: req.grantee.to_string(),
        grantee_office: req.grantee_office.to_string(),
        created_by: caller.staff_or_none().to_owned(),
        office: caller.office.clone(),
        created_at: now,
        expires_at: now + req.ttl_seconds * 1000,
        max_uses: req.max_uses,
        uses: 0,
        revoked_at: None,
    };
    let (token, _) = auth::issue(
        &keys,
        &vault.token_policy,
        TokenRequest {
            role: Role::Officer,
            sub: grant.grantee.as_str(),
            office: Some(grant.grantee_office.as_str()),
            ttl_seconds: req.ttl_seconds,
            grant: Some(grant.id),
            via: None,
        },
    )?;
    e.citizen_idx = Some(citizen);
    e.grant_id = Some(grant.id.to_string());
    e.case_ref = Some(grant.case_ref.clone());
    let created = GrantCreated {
        grant_id: grant.id,
        link: super::tokens::sign_in_link(&vault.console_url, &token),
        token,
        expires_at: rfc3339(grant.expires_at),
    };
    vault
        .change(move |tx| {
            Box::pin(async move {
                store::insert(tx, &grant, &keys).await?;
                Ok((Some(e), ()))
            })
        })
        .await?;
    Ok(created)
}

pub async fn revoke(vault: &Vault, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    let mut e = entry(caller, AuditAction::GrantRevoke);
    e.grant_id = Some(id.to_string());
    require_role(vault, &e, caller, &[Role::Clerk, Role::Admin]).await?;
    let Some(grant) = store::get(&vault.db.pool, id).await? else {
        return Err(refuse(vault, e, ApiError::NotFound).await);
    };
    let grant = open(vault, grant)?;
    e.citizen_idx = Some(grant.citizen_idx);
    e.case_ref = Some(grant.case_ref.clone());
    let by = caller.staff_or_none().to_owned();
    vault
        .change(move |tx| {
            Box::pin(async move {
                store::revoke(tx, id, &by, now_ms()).await?;
                Ok((Some(e), ()))
            })
        })
        .await
}

/// What a grant allows and how much of it is left: no personal fields, so the officer's screen
/// can say why a revoked, expired or used-up grant reads nothing more.
#[derive(Debug, Serialize)]
pub struct GrantView {
    pub grant_id: Uuid,
    pub doc_types: Vec<&'static str>,
    pub case_ref: String,
    pub purpose: String,
    pub grantee: String,
    pub grantee_office: String,
    pub created_by: String,
    pub office: String,
    pub created_at: String,
    pub expires_at: String,
    pub max_uses: i64,
    pub uses: i64,
    pub uses_left: i64,
    pub status: GrantState,
}

impl GrantView {
    pub(super) fn new(g: &GrantRow, now: i64) -> Self {
        let status = g.state(now);
        Self {
            grant_id: g.id,
            doc_types: g.doc_types.iter().map(|t| t.as_str()).collect(),
            case_ref: g.case_ref.clone(),
            purpose: g.purpose.clone(),
            grantee: g.grantee.clone(),
            grantee_office: g.grantee_office.clone(),
            created_by: g.created_by.clone(),
            office: g.office.clone(),
            created_at: rfc3339(g.created_at),
            expires_at: rfc3339(g.expires_at),
            max_uses: g.max_uses,
            uses: g.uses,
            uses_left: (g.max_uses - g.uses).max(0),
            status,
        }
    }
}

/// One grant's scope: for the officer holding it (whatever its state, so their screen can
/// say why it no longer reads), or for a clerk or admin. Not logged when allowed: it carries
/// no personal field. A refusal is logged like any other.
pub async fn scope(vault: &Vault, caller: &Caller, id: Uuid) -> Result<GrantView, ApiError> {
    let mut e = entry(caller, AuditAction::GrantRead);
    e.grant_id = Some(id.to_string());
    require_role(
        vault,
        &e,
        caller,
        &[Role::Officer, Role::Clerk, Role::Admin],
    )
    .await?;
    if caller.role == Role::Officer && caller.grant != Some(id) {
        return Err(refuse(vault, e, ApiError::ScopeDenied).await);
    }
    let Some(grant) = store::get(&vault.db.pool, id).await? else {
        return Err(refuse(vault, e, ApiError::NotFound).await);
    };
    let grant = open(vault, grant)?;
    // A signed-in officer names the grant in a header: it must be theirs, at their office.
    if caller.role == Role::Officer
        && let Err(err) = made_for(&grant, caller)
    {
        return Err(refuse(vault, e, err).await);
    }
    Ok(GrantView::new(&grant, now_ms()))
}

/// A grant reads only for the officer it names, at the office it names: a signed-in officer of
/// another office with the same staff id reads nothing (a grant's own token always names the
/// grant's office).
pub(super) fn made_for(grant: &GrantRow, caller: &Caller) -> Result<(), ApiError> {
    if Some(grant.grantee.as_str()) == caller.staff_id() && grant.grantee_office == caller.office {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this grant was made for another officer".into(),
        ))
    }
}

/// Most grants a citizen's list shows.
pub const LIST_LIMIT: i64 = 200;

/// A citizen's grants, newest first: for the clerk at the desk (to revoke one, or print its
/// receipt again) and for the citizen. Logged: which dossiers concern a citizen is theirs.
pub async fn for_citizen(
    vault: &Vault,
    caller: &Caller,
    national_id: &NationalId,
) -> Result<Vec<GrantView>, ApiError> {
    let keys = vault.keys();
    let citizen = keys.citizen_index(national_id)?;
    let mut e = entry(caller, AuditAction::GrantList);
    e.citizen_idx = Some(citizen);
    require_role(
        vault,
        &e,
        caller,
        &[Role::Clerk, Role::Admin, Role::Citizen],
    )
    .await?;
    require_own_records(vault, &e, caller, national_id, "grants").await?;
    let rows = store::list_for_citizen(&vault.db.pool, &citizen, LIST_LIMIT).await?;
    vault.record(e).await?;
    let now = now_ms();
    rows.into_iter()
        .map(|g| Ok(GrantView::new(&open(vault, g)?, now)))
        .collect()
}

/// The grants in force made for the signed-in officer at their office, newest first, so they
/// open one without its link. Logged: which dossiers an officer holds is for auditors to see.
pub async fn for_me(vault: &Vault, caller: &Caller) -> Result<Vec<GrantView>, ApiError> {
    let mut e = entry(caller, AuditAction::GrantList);
    e.reason = Some("the officer's own grants".into());
    require_role(vault, &e, caller, &[Role::Officer]).await?;
    let now = now_ms();
    let rows = store::list_for_grantee(
        &vault.db.pool,
        caller.staff_or_none(),
        &caller.office,
        now,
        LIST_LIMIT,
    )
    .await?;
    vault.record(e).await?;
    rows.into_iter()
        .map(|g| Ok(GrantView::new(&open(vault, g)?, now)))
        .collect()
}

/// The QR code printed on the citizen's receipt, as SVG: the dossier code and the grant id,
/// one per line, so a desk can find the grant again by scanning the paper. Drawn here, with
/// no network; carries nothing personal.
pub async fn receipt_qr(vault: &Vault, caller: &Caller, id: Uuid) -> Result<String, ApiError> {
    let mut e = entry(caller, AuditAction::GrantRead);
    e.grant_id = Some(id.to_string());
    require_role(vault, &e, caller, &[Role::Clerk, Role::Admin]).await?;
    let Some(grant) = store::get(&vault.db.pool, id).await? else {
        return Err(refuse(vault, e, ApiError::NotFound).await);
    };
    qr_svg(&receipt_qr_text(&open(vault, grant)?.case_ref, id))
}

/// What the receipt's QR code says.
pub fn receipt_qr_text(case_ref: &str, grant_id: Uuid) -> String {
    format!("{case_ref}\n{grant_id}")
}

fn qr_svg(text: &str) -> Result<String, ApiError> {
    use qrcode::render::svg;
    // M: survives a crease or a stamp on a printed receipt; the text is short enough.
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ApiError::internal("draw the receipt QR code", e))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(180, 180)
        .quiet_zone(true)
        .build())
}
