//! Refusing a token before it expires (`hoso token revoke`).

use super::Vault;
use crate::auth;
use crate::db::revoked_tokens;
use crate::error::ApiError;

/// Puts the token's `jti` on the revocation list, after checking the token is one this vault
/// issued (a forged or foreign token cannot fill the list). Returns the `jti`.
pub async fn revoke(vault: &Vault, token: &str) -> Result<String, ApiError> {
    let claims = auth::decode(&vault.keys(), &vault.token_policy, token.trim())?;
    revoked_tokens::revoke_token(&vault.db.pool, &claims.jti, claims.exp).await?;
    Ok(claims.jti)
}
