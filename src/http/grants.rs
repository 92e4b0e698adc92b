//! `POST /v1/grants`, `DELETE /v1/grants/{id}`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use axum::{Json, Router};

use super::{json_rejection, parse_id};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::records::grants::{self, GrantRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/grants", post(create))
        .route("/v1/grants/{id}", delete(revoke))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<GrantRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(request) = body.map_err(json_rejection)?;
    let created = grants::create(&state.vault, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    grants::revoke(&state.vault, &caller, parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
