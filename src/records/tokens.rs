//! Issuing staff and citizen tokens (`hoso token issue`) and refusing one before it expires
//! (`hoso token revoke`). Both are logged: who may act as whom is part of what auditors check.

use super::Vault;
use crate::audit::{self, Entry};
use crate::auth::{self, TokenRequest};
use crate::db::revoked_tokens;
use crate::domain::{NationalId, Role};
use crate::error::ApiError;

/// A link that signs its holder in to the console at `console_url`. The token rides in the
/// URL *fragment*, which browsers never send to a server, so it reaches no access log or
/// proxy; the console moves it to `sessionStorage` and removes it from the address bar.
pub fn sign_in_link(console_url: &str, token: &str) -> String {
    format!("{console_url}/#token={token}")
}

/// Issues a token, logged first. Staff tokens name an office (every read a staff member makes
/// is logged as from it); officers get tokens only through grants.
pub async fn issue(vault: &Vault, request: TokenRequest<'_>) -> Result<String, ApiError> {
    let keys = vault.keys();
    let mut e = Entry {
        actor: "hoso-cli".into(),
        role: "admin".into(),
        office: "-".into(),
        action: "token.issue",
        ..Entry::default()
    };
    match request.role {
        Role::Officer => {
            return Err(ApiError::InvalidRequest(
                "officers get tokens through grants (POST /v1/grants)".into(),
            ));
        }
        Role::Citizen => {
            // The citizen is named by their blind index, never their number.
            let id = NationalId::parse(request.sub)?;
            e.citizen_idx = Some(keys.citizen_index(&id).to_hex());
            e.reason = Some(format!("citizen token, {} s", request.ttl_seconds));
        }
        role => {
            let Some(office) = request.office else {
                return Err(ApiError::InvalidRequest(format!(
                    "a {role} token names the office it acts for: add --office"
                )));
            };
            e.reason = Some(format!(
                "{role} token for {} at {office}, {} s",
                request.sub, request.ttl_seconds
            ));
        }
    }
    let (token, claims) = auth::issue(&keys, &vault.token_policy, request)?;
    e.reason = e.reason.map(|r| format!("{r}, jti {}", claims.jti));
    audit::record(&vault.log, &keys, &vault.metrics, e).await?;
    Ok(token)
}

/// Puts the token's `jti` on the revocation list, after checking the token is one this vault
/// issued (a forged or foreign token cannot fill the list). Returns the `jti`.
pub async fn revoke(vault: &Vault, token: &str) -> Result<String, ApiError> {
    let claims = auth::decode(&vault.keys(), &vault.token_policy, token.trim())?;
    revoked_tokens::revoke_token(&vault.db.pool, &claims.jti, claims.exp).await?;
    Ok(claims.jti)
}
