//! `GET /v1/me`: who the console is signed in as, and until when.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::format_rfc3339;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/me/grants", get(my_grants))
}

/// Answers only from the caller's own, checked token (signature, expiry, revocation) and the
/// vault's limits the console checks before sending: nothing personal about anyone else is
/// said, so it is not logged.
async fn me(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    Json(json!({
        "max_upload_bytes": state.vault.limits.max_upload_bytes,
        "role": caller.role.to_string(),
        "sub": caller.subject(),
        "office": caller.office,
        "grant_id": caller.grant,
        "signed_in_via": caller.via,
        "jti": caller.jti,
        "expires_at": format_rfc3339(caller.expires_at * 1000),
    }))
}

/// A signed-in officer's grants in force, newest first (`{"grants": [...]}`).
async fn my_grants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, crate::error::ApiError> {
    let grants = crate::records::grants::for_me(&state.vault, &caller).await?;
    Ok(Json(json!({ "grants": grants })))
}
