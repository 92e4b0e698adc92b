//! The extractor: a request's bearer token becomes an authenticated [`Caller`], or the request
//! is refused before any handler runs.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::auth::{self, Caller};
use crate::error::ApiError;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthenticated("an Authorization: Bearer token is required".into())
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated("the Authorization header is not valid".into()))?;
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthenticated("an Authorization: Bearer token is required".into())
        })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let vault = &state.vault;
        let token = bearer(parts)?;
        if token.split('.').count() != 3 {
            return Err(ApiError::Unauthenticated(
                "the token is not a JWT: hoso accepts its own tokens and, from the staff \
                 identity provider, JWT access tokens (RFC 9068); an opaque access token cannot \
                 be checked here"
                    .into(),
            ));
        }
        if crate::records::sign_in::is_access_token(token) {
            let caller = crate::records::sign_in::agency_caller(vault, token).await?;
            return with_grant_header(parts, caller);
        }
        let refusal = match auth::authenticate(
            &vault.keys(),
            &vault.token_policy,
            &vault.verified_tokens,
            &vault.db,
            token,
        )
        .await
        {
            Ok(caller) => return with_grant_header(parts, caller),
            Err(refusal) => refusal,
        };
        Err(crate::records::refuse_token(vault, refusal).await)
    }
}

/// The header a signed-in officer names the grant they read through with (a grant's own token
/// names it in its claims instead).
pub const GRANT_HEADER: &str = "hoso-grant";

/// An officer's session reads through the grant the `Hoso-Grant` header names; the grant's
/// own checks (the grantee and office must be the caller's) decide whether it may. A grant
/// token's claim cannot be swapped for another grant by the header.
fn with_grant_header(parts: &Parts, mut caller: Caller) -> Result<Caller, ApiError> {
    let Some(value) = parts.headers.get(GRANT_HEADER) else {
        return Ok(caller);
    };
    let id = value
        .to_str()
        .ok()
        .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
        .ok_or_else(|| {
            ApiError::InvalidRequest("the Hoso-Grant header is not a grant id".into())
        })?;
    match (caller.role, caller.grant) {
        (crate::domain::Role::Officer, None) => caller.grant = Some(id),
        (crate::domain::Role::Officer, Some(own)) if own == id => {}
        (crate::domain::Role::Officer, Some(_)) => {
            return Err(ApiError::Forbidden(
                "a grant's token reads only through its own grant".into(),
            ));
        }
        _ => {
            return Err(ApiError::Forbidden(
                "only officers read through a grant".into(),
            ));
        }
    }
    Ok(caller)
}
