//! Grants: a clerk lets one officer read one citizen's documents of some types, for one case,
//! for a while, a bounded number of times. The token is only a handle; the row decides.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Vault;
use super::{entry, refuse, require_role};
use crate::audit;
use crate::auth::{self, Caller, TokenRequest};
use crate::db::grants::{self as store, GrantRow};
use crate::db::now_ms;
use crate::domain::format_rfc3339 as rfc3339;
use crate::domain::{Code, DocType, NationalId, Role, parse_text};
use crate::error::ApiError;

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
    let mut e = entry(&keys, caller, "grant.create");
    require_role(vault, &e, caller, &[Role::Clerk]).await?;
    let req = validate(req)?;
    let citizen = keys.citizen_index(&req.national_id).to_hex();
    let now = now_ms();
    let grant = GrantRow {
        id: Uuid::now_v7(),
        citizen_idx: citizen.clone(),
        doc_types: req.doc_types,
        case_ref: req.case_ref.to_string(),
        purpose: req.purpose,
        grantee: req.grantee.to_string(),
        grantee_office: req.grantee_office.to_string(),
        created_by: caller.staff_id().unwrap_or("-").to_owned(),
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
        },
    )?;
    e.citizen_idx = Some(citizen);
    e.grant_id = Some(grant.id.to_string());
    e.case_ref = Some(grant.case_ref.clone());
    let mut tx = audit::begin(&vault.db, &vault.metrics).await?;
    store::insert(&mut tx, &grant).await?;
    audit::append(&mut tx, &keys, &vault.metrics, e).await?;
    audit::commit(tx, &vault.metrics).await?;
    Ok(GrantCreated {
        grant_id: grant.id,
        token,
        expires_at: rfc3339(grant.expires_at),
    })
}

pub async fn revoke(vault: &Vault, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    let keys = vault.keys();
    let mut e = entry(&keys, caller, "grant.revoke");
    e.grant_id = Some(id.to_string());
    require_role(vault, &e, caller, &[Role::Clerk, Role::Admin]).await?;
    let Some(grant) = store::get(&vault.db.pool, id).await? else {
        return Err(refuse(vault, e, ApiError::NotFound).await);
    };
    e.citizen_idx = Some(grant.citizen_idx.clone());
    e.case_ref = Some(grant.case_ref.clone());
    let mut tx = audit::begin(&vault.db, &vault.metrics).await?;
    store::revoke(&mut tx, id, caller.staff_id().unwrap_or("-"), now_ms()).await?;
    audit::append(&mut tx, &keys, &vault.metrics, e).await?;
    audit::commit(tx, &vault.metrics).await?;
    Ok(())
}
