//! The records service: the only place that combines database, object store, crypto and audit.
//! Handlers call one function here per request; every function decides who may do what, writes
//! the audit entry (refusals included) and only then touches document bytes.

pub mod auditing;
pub mod backup;
pub mod grants;
pub mod intake;
pub mod maintenance;
pub mod master_keys;
pub mod read;
pub mod status;
pub mod tokens;
pub mod vault;

pub use vault::{Limits, Vault};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::audit::{self, Entry, Outcome};
use crate::auth::Caller;
use crate::crypto::CitizenIndex;
use crate::crypto::attestation::{self, AttestationClaims};
use crate::crypto::envelope::{self, Binding, DataKey};
use crate::crypto::keyring::Keyring;
use crate::db::documents::DocumentRow;
use crate::domain::{PersonalFields, Role};
use crate::error::ApiError;

pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn parse_rfc3339(text: &str, what: &str) -> Result<i64, ApiError> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        ApiError::InvalidRequest(format!(
            "{what} must be an RFC 3339 time such as 2026-11-24T08:00:00Z"
        ))
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::InvalidRequest(format!("{what} is out of range")))
}

/// Who did it, for the audit log. A citizen is named by their blind index, never their number.
pub fn actor(keys: &Keyring, caller: &Caller) -> String {
    match (caller.staff_id(), caller.citizen()) {
        (Some(staff), _) => staff.to_owned(),
        (None, Some(id)) => format!("citizen:{}", &keys.citizen_index(&id).to_hex()[..16]),
        (None, None) => "unknown".to_owned(),
    }
}

/// An audit entry for `caller` doing `action`, to be completed by the caller of this function.
pub fn entry(keys: &Keyring, caller: &Caller, action: &'static str) -> Entry {
    Entry {
        actor: actor(keys, caller),
        role: caller.role.as_str().to_owned(),
        office: caller.office.clone(),
        action,
        grant_id: caller.grant.map(|g| g.to_string()),
        ..Entry::default()
    }
}

/// Records a refusal and returns the error to send. If even the refusal cannot be recorded, the
/// request fails as unavailable: the log fails closed for refusals too.
pub async fn refuse(vault: &Vault, mut entry: Entry, err: ApiError) -> ApiError {
    entry.outcome = Some(Outcome::Denied);
    entry.reason = Some(err.code().to_owned());
    match audit::record(&vault.db, &vault.keys(), &vault.metrics, entry).await {
        Ok(()) => err,
        Err(audit_err) => audit_err,
    }
}

/// Requires one of `roles`, recording the refusal otherwise.
pub async fn require_role(
    vault: &Vault,
    entry: &Entry,
    caller: &Caller,
    roles: &[Role],
) -> Result<(), ApiError> {
    match caller.require(roles) {
        Ok(()) => Ok(()),
        Err(err) => Err(refuse(vault, entry.clone(), err).await),
    }
}

pub fn binding(row: &DocumentRow) -> Result<Binding, ApiError> {
    Ok(Binding {
        document_id: row.id,
        citizen: CitizenIndex::from_hex(&row.citizen_idx)
            .ok_or_else(|| ApiError::Internal("stored citizen index is not hex".into()))?,
    })
}

/// Unwraps a document's data key with the KEK version that wrapped it. A version this process
/// has not loaded yet was made by a rotation elsewhere: the key files are read again once.
pub fn data_key(vault: &Vault, row: &DocumentRow) -> Result<DataKey, ApiError> {
    let version = u32::try_from(row.kek_version)
        .map_err(|_| ApiError::Internal("stored KEK version out of range".into()))?;
    let keys = vault
        .keys
        .with_kek(version)
        .map_err(|e| ApiError::internal("reload keys", e))?;
    let kek = keys.kek(version).ok_or_else(|| {
        ApiError::Internal(format!("KEK version {version} is not in the key directory"))
    })?;
    kek.unwrap(&row.wrapped_key, &binding(row)?)
        .map_err(|e| ApiError::Integrity(format!("document {}: {e}", row.id)))
}

/// A document as clients see it: metadata with the personal fields opened.
#[derive(Debug, Serialize)]
pub struct DocumentView {
    pub id: Uuid,
    pub doc_type: &'static str,
    pub status: &'static str,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    #[serde(flatten)]
    pub fields: PersonalFields,
    pub verified_against_original: bool,
    pub taken_in: Stamp,
    pub verified: Option<Stamp>,
    pub supersedes: Option<Uuid>,
    pub attestation: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Stamp {
    pub by: String,
    pub office: String,
    pub at: String,
}

pub fn view(vault: &Vault, row: &DocumentRow) -> Result<DocumentView, ApiError> {
    let key = data_key(vault, row)?;
    let json = envelope::open_fields(&key, &binding(row)?, &row.sealed_fields)
        .map_err(|e| ApiError::Integrity(format!("document {}: {e}", row.id)))?;
    let fields: PersonalFields = serde_json::from_slice(&json)
        .map_err(|e| ApiError::internal("sealed fields are not valid JSON", e))?;
    Ok(DocumentView {
        id: row.id,
        doc_type: row.doc_type.as_str(),
        status: row.status.as_str(),
        content_type: row.content_type.clone(),
        size: row.size_bytes,
        sha256: row.sha256.clone(),
        fields,
        verified_against_original: row.verified_against_original,
        taken_in: Stamp {
            by: row.intake_by.clone(),
            office: row.intake_office.clone(),
            at: rfc3339(row.intake_at),
        },
        verified: match (&row.verified_by, &row.verified_office, row.verified_at) {
            (Some(by), Some(office), Some(at)) => Some(Stamp {
                by: by.clone(),
                office: office.clone(),
                at: rfc3339(at),
            }),
            _ => None,
        },
        supersedes: row.supersedes,
        attestation: row.attestation.clone(),
    })
}

/// Signs the attestation of `row` as verified by `by` at `office`, at `at` (ms).
pub fn attest(
    keys: &Keyring,
    issuer: &str,
    row: &DocumentRow,
    by: &str,
    office: &str,
    at: i64,
) -> Result<String, ApiError> {
    let claims = AttestationClaims {
        iss: issuer.to_owned(),
        document_id: row.id.to_string(),
        doc_type: row.doc_type.as_str().to_owned(),
        sha256: row.sha256.clone(),
        size: row.size_bytes,
        verified_by: by.to_owned(),
        office: office.to_owned(),
        verified_at: rfc3339(at),
        iat: at / 1000,
    };
    attestation::sign(&keys.attestation, &claims)
        .map_err(|e| ApiError::internal("sign attestation", e))
}
