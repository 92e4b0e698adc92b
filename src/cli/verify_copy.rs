//! `hoso verify-copy`: a copy checked against its attestation, offline.

use std::process::ExitCode;

use super::CliError;
use crate::config::Settings;

pub fn run(
    settings: &Settings,
    file: &std::path::Path,
    attestation: &str,
    jwks: Option<&std::path::Path>,
) -> Result<ExitCode, CliError> {
    let jws = match std::fs::read_to_string(attestation) {
        Ok(text) => text.trim().to_owned(),
        Err(_) => attestation.trim().to_owned(),
    };
    let jwks = read_jwks(settings, jwks)?;
    // Attestation keys only: a JWS signed with the token key is not an attestation.
    let keys = crate::crypto::attestation::keys_from_jwks(&jwks);
    let claims = match crate::crypto::attestation::check(&jws, &keys) {
        Ok(c) => c,
        Err(reason) => {
            println!("NOT VERIFIED: {reason}");
            return Ok(ExitCode::from(1));
        }
    };
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let digest = hex::encode(crate::crypto::sha256(&bytes));
    if digest != claims.sha256 || bytes.len() as i64 != claims.size {
        println!(
            "NOT VERIFIED: {} is not the attested document {} (digest or size differs)",
            file.display(),
            claims.document_id
        );
        return Ok(ExitCode::from(1));
    }
    println!(
        "VERIFIED: {} is document {} ({}), verified by {} at {} on {}",
        file.display(),
        claims.document_id,
        claims.doc_type,
        claims.verified_by,
        claims.office,
        claims.verified_at
    );
    if let Some(words) = card_check_words(claims.card_check.as_deref()) {
        println!("{words}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The public keys to check against: a JWKS file (as served at /.well-known/jwks.json), or this
/// vault's own.
pub fn read_jwks(
    settings: &Settings,
    jwks: Option<&std::path::Path>,
) -> Result<serde_json::Value, CliError> {
    let jwks: serde_json::Value = match jwks {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?
        }
        None => super::keyring(settings)?.jwks(),
    };
    if jwks["keys"].as_array().is_none() {
        return Err("the JWKS has no `keys` array".into());
    }
    Ok(jwks)
}

/// `hoso verify-export`: a citizen's export checked offline against the vault's export key.
pub fn verify_export(
    settings: &Settings,
    file: &std::path::Path,
    jwks: Option<&std::path::Path>,
) -> Result<ExitCode, CliError> {
    let jwks = read_jwks(settings, jwks)?;
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    match crate::records::export::verify(&bytes, &jwks) {
        Ok(checked) => {
            let m = &checked.manifest;
            println!(
                "VERIFIED: {} is an export of {} by {} made {}: {} files, each as signed",
                file.display(),
                m.citizen,
                m.vault,
                m.created_at,
                m.files.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            println!("NOT VERIFIED: {reason}");
            Ok(ExitCode::from(1))
        }
    }
}

/// What an attestation's `card_check` claim means, in words. The QR is unsigned: a match shows
/// no typing mistake, not that the card is genuine.
fn card_check_words(claim: Option<&str>) -> Option<&'static str> {
    match claim? {
        "matched" => Some(
            "At intake the typed fields matched the card's QR code (unsigned: this shows no \
             typing mistake, not that the card is genuine).",
        ),
        "overridden" => Some(
            "At intake the clerk kept fields that differ from the card's QR code, with a reason \
             (in the audit log).",
        ),
        _ => None,
    }
}
