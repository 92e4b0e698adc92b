//! A stored document opened for its reader: the binding its ciphertexts are sealed to, its data
//! key unwrapped, its personal fields opened into the view clients see, its attestation signed.

use serde::Serialize;
use uuid::Uuid;

use super::Vault;
use crate::crypto::attestation::{self, AttestationClaims};
use crate::crypto::envelope::{self, Binding, DataKey, WrapError, WrapFormat};
use crate::crypto::keyring::Keyring;
use crate::db::documents::DocumentRow;
use crate::domain::{PersonalFields, format_rfc3339 as rfc3339};
use crate::error::ApiError;

/// What the row's ciphertexts are bound to. Refuses a row of a format this version does not
/// know: its bytes would be read with the wrong layout.
pub fn binding(row: &DocumentRow) -> Result<Binding, ApiError> {
    wrap_format(row)?;
    Ok(Binding {
        document_id: row.id,
        citizen: row.citizen_idx,
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
    kek.unwrap(&row.wrapped_key, &binding(row)?, wrap_format(row)?)
        .map_err(|e| match e {
            WrapError::Integrity(e) => ApiError::Integrity(format!("document {}: {e}", row.id)),
            WrapError::Unavailable(why) => ApiError::Unavailable(why),
        })
}

/// How the row's data key is bound: for format 2, to the type the row says it has, so a
/// relabelled row fails closed as an integrity error.
fn wrap_format(row: &DocumentRow) -> Result<WrapFormat, ApiError> {
    WrapFormat::of_row(row.format_version, row.doc_type).ok_or_else(|| {
        ApiError::Integrity(format!(
            "document {}: unknown format version {}",
            row.id, row.format_version
        ))
    })
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
    /// None for an erased document: its fields went with its key.
    #[serde(flatten)]
    pub fields: Option<PersonalFields>,
    pub verified_against_original: bool,
    pub taken_in: Stamp,
    pub verified: Option<Stamp>,
    pub supersedes: Option<Uuid>,
    pub attestation: Option<String>,
    /// When, by whom and why it was erased (a tombstone only).
    pub erased: Option<ErasedStamp>,
}

#[derive(Debug, Serialize)]
pub struct ErasedStamp {
    pub by: String,
    pub at: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Stamp {
    pub by: String,
    pub office: String,
    pub at: String,
}

/// The personal fields, opened with the document's data key.
pub fn fields(vault: &Vault, row: &DocumentRow) -> Result<PersonalFields, ApiError> {
    let key = data_key(vault, row)?;
    let json = envelope::open_fields(&key, &binding(row)?, &row.sealed_fields)
        .map_err(|e| ApiError::Integrity(format!("document {}: {e}", row.id)))?;
    serde_json::from_slice(&json)
        .map_err(|e| ApiError::internal("sealed fields are not valid JSON", e))
}

pub fn view(vault: &Vault, row: &DocumentRow) -> Result<DocumentView, ApiError> {
    let erased = row.status == crate::domain::DocStatus::Erased;
    let fields = if erased {
        None
    } else {
        Some(fields(vault, row)?)
    };
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
        erased: match (&row.erased_by, row.erased_at, &row.erase_reason) {
            (Some(by), Some(at), Some(reason)) if erased => Some(ErasedStamp {
                by: by.clone(),
                at: rfc3339(at),
                reason: reason.clone(),
            }),
            _ => None,
        },
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
    card_check: Option<crate::domain::CardCheck>,
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
        card_check: card_check.map(|c| c.as_str().to_owned()),
    };
    Ok(attestation::sign(&keys.attestation, &claims)?)
}
