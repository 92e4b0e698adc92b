//! `GET /v1/sessions` and `DELETE /v1/sessions/{jti}`: the admin's view of the sessions hoso
//! issued that are still live, and ending one at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::records::tokens;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", get(live))
        .route("/v1/sessions/{jti}", delete(end))
}

async fn live(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let sessions = tokens::live(&state.vault, &caller).await?;
    Ok(Json(json!({ "sessions": sessions })))
}

async fn end(
    State(state): State<AppState>,
    caller: Caller,
    Path(jti): Path<String>,
) -> Result<StatusCode, ApiError> {
    // A jti is a UUID here; anything else names no session.
    let jti = uuid::Uuid::parse_str(&jti).map_err(|_| ApiError::NotFound)?;
    tokens::end(&state.vault, &caller, &jti.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}
