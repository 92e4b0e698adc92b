//! Verified-copy attestations: a compact JWS (RFC 7515), `alg: EdDSA`, `typ:
//! hoso-attestation+jwt`, `kid` naming the vault's attestation key, over [`AttestationClaims`].
//! Anyone holding the vault's public keys (`/.well-known/jwks.json`) can check a copy offline.

use serde::{Deserialize, Serialize};

use super::KeyUnavailable;
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
    /// For a CCCD: `matched` when its typed fields agreed with its QR code at intake,
    /// `overridden` when the clerk kept them over it with a reason. Absent: not checked (and on
    /// every attestation made before this claim existed, which still verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_check: Option<String>,
}

pub const ATTESTATION_TYPE: &str = "hoso-attestation+jwt";

pub fn sign(key: &SigningKey, claims: &AttestationClaims) -> Result<String, KeyUnavailable> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.kid().to_owned());
    header.typ = Some(ATTESTATION_TYPE.to_owned());
    key.jws(&header, claims)
}

/// The attestation keys of a JWKS, and only those: `OKP`/`Ed25519`, `alg` `EdDSA`, `use`
/// `sig`, and a `kid` that names the attestation purpose and this very key
/// (`attestation-` + the first 16 hex digits of SHA-256 of the public key, as
/// [`SigningKey`](super::signing::SigningKey) derives it). The token key sits in the same JWKS;
/// whoever holds it must not be able to sign a "verified copy".
pub fn keys_from_jwks(jwks: &serde_json::Value) -> Vec<(String, jsonwebtoken::DecodingKey)> {
    use base64::Engine;
    let Some(keys) = jwks["keys"].as_array() else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|k| {
            let kid = k["kid"].as_str()?;
            let x = k["x"].as_str()?;
            let suitable = k["kty"] == "OKP"
                && k["crv"] == "Ed25519"
                && k["alg"] == "EdDSA"
                && k["use"] == "sig";
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(x)
                .ok()?;
            let expected = format!("{PURPOSE}-{}", &hex::encode(super::sha256(&raw))[..16]);
            (suitable && kid == expected)
                .then(|| jsonwebtoken::DecodingKey::from_ed_components(x).ok())
                .flatten()
                .map(|key| (kid.to_owned(), key))
        })
        .collect()
}

/// The purpose label of the attestation key (the prefix of its `kid`).
pub const PURPOSE: &str = "attestation";

/// Checks an attestation against attestation keys (from [`keys_from_jwks`]): algorithm, type,
/// key and signature.
pub fn check(
    jws: &str,
    keys: &[(String, jsonwebtoken::DecodingKey)],
) -> Result<AttestationClaims, String> {
    let header = jsonwebtoken::decode_header(jws).map_err(|e| format!("not a JWS: {e}"))?;
    if header.alg != jsonwebtoken::Algorithm::EdDSA {
        return Err("attestations are signed with EdDSA only".into());
    }
    if header.typ.as_deref() != Some(ATTESTATION_TYPE) {
        return Err(format!(
            "not an attestation (typ must be {ATTESTATION_TYPE})"
        ));
    }
    let kid = header.kid.ok_or("the attestation names no key (kid)")?;
    let (_, key) = keys
        .iter()
        .find(|(k, _)| *k == kid)
        .ok_or_else(|| format!("no attestation key with kid {kid}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<AttestationClaims>(jws, key, &validation)
        .map(|d| d.claims)
        .map_err(|e| format!("signature check failed: {e}"))
}
