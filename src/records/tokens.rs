//! Issuing staff and citizen tokens (`hoso token issue`) and refusing one before it expires
//! (`hoso token revoke`). Both are logged: who may act as whom is part of what auditors check.

use super::Vault;
use crate::audit::{AuditAction, Entry};
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
    let mut e = Entry::operator(AuditAction::TokenIssue);
    match request.role {
        Role::Officer => {
            return Err(ApiError::InvalidRequest(
                "officers get tokens through grants (POST /v1/grants)".into(),
            ));
        }
        Role::Citizen => {
            // The citizen is named by their blind index, never their number.
            let id = NationalId::parse(request.sub)?;
            e.citizen_idx = Some(keys.citizen_index(&id));
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
    vault.record(e).await?;
    Ok(token)
}

/// Puts the token's `jti` on the revocation list, after checking the token is one this vault
/// issued (a forged or foreign token cannot fill the list). Returns the `jti`.
///
/// The revocation and its entry commit together: a revocation that is not in the log did not
/// happen, and a logged one is in force.
pub async fn revoke(vault: &Vault, token: &str) -> Result<String, ApiError> {
    let keys = vault.keys();
    let claims = auth::decode(&keys, &vault.token_policy, token.trim())?;
    let mut e = Entry::operator(AuditAction::TokenRevoke);
    e.reason = Some(match claims.role {
        Role::Citizen => "citizen token".to_owned(),
        role => format!("{role} token for {}", claims.sub),
    });
    if claims.role == Role::Citizen {
        e.citizen_idx = Some(keys.citizen_index(&NationalId::parse(&claims.sub)?));
    }
    e.grant_id = claims.grant.clone();
    e.reason = e.reason.map(|r| format!("{r}, jti {}", claims.jti));
    let (jti, exp) = (claims.jti.clone(), claims.exp);
    vault
        .change(move |tx| {
            Box::pin(async move {
                revoked_tokens::revoke_token(&mut **tx, &jti, exp).await?;
                Ok((Some(e), ()))
            })
        })
        .await?;
    Ok(claims.jti)
}
