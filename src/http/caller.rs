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
        let refusal = match auth::authenticate(
            &vault.keys(),
            &vault.token_policy,
            &vault.verified_tokens,
            &vault.db,
            bearer(parts)?,
        )
        .await
        {
            Ok(caller) => return Ok(caller),
            Err(refusal) => refusal,
        };
        Err(crate::records::refuse_token(vault, refusal).await)
    }
}
