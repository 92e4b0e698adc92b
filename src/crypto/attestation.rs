//! Verified-copy attestations: a compact JWS (RFC 7515), `alg: EdDSA`, `typ:
//! hoso-attestation+jwt`, `kid` naming the vault's attestation key, over [`AttestationClaims`].
//! Anyone holding the vault's public keys (`/.well-known/jwks.json`) can check a copy offline.

use serde::{Deserialize, Serialize};

use super::signing::SigningKey;

/// What the vault states about a verified copy: which document, its digest and size, and who
/// checked the scan against the original, at which office, when.
#[derive(Debug, Serialize, Deserialize)]
pub struct AttestationClaims {
    pub iss: String,
    pub document_id: String,
    pub doc_type: String,
    /// SHA-256 of the plaintext, lowercase hex.
    pub sha256: String,
    pub size: i64,
    pub verified_by: String,
    pub office: String,
    /// RFC 3339.
    pub verified_at: String,
    pub iat: i64,
}

pub const ATTESTATION_TYPE: &str = "hoso-attestation+jwt";

pub fn sign(key: &SigningKey, claims: &AttestationClaims) -> Result<String, String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.kid().to_owned());
    header.typ = Some(ATTESTATION_TYPE.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding_key()).map_err(|e| e.to_string())
}

/// Checks an attestation against a set of Ed25519 public keys (a JWKS's `x` values by `kid`).
pub fn check(
    jws: &str,
    keys: &[(String, jsonwebtoken::DecodingKey)],
) -> Result<AttestationClaims, String> {
    let header = jsonwebtoken::decode_header(jws).map_err(|e| format!("not a JWS: {e}"))?;
    if header.alg != jsonwebtoken::Algorithm::EdDSA {
        return Err("attestations are signed with EdDSA only".into());
    }
    let kid = header.kid.ok_or("the attestation names no key (kid)")?;
    let (_, key) = keys
        .iter()
        .find(|(k, _)| *k == kid)
        .ok_or_else(|| format!("no public key with kid {kid}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<AttestationClaims>(jws, key, &validation)
        .map(|d| d.claims)
        .map_err(|e| format!("signature check failed: {e}"))
}
