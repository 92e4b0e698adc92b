//! `POST /v1/grants`, `GET|DELETE /v1/grants/{id}`, `GET /v1/grants/{id}/documents`,
//! `GET /v1/grants/{id}/qr`, `GET /v1/citizens/{national_id}/grants`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{json_rejection, parse_id};
use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::NationalId;
use crate::error::ApiResult;
use crate::records::grants::{self, GrantRequest, GrantView};
use crate::records::{DocumentView, read};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/grants", post(create))
        .route("/v1/grants/{id}", get(scope).delete(revoke))
        .route("/v1/grants/{id}/documents", get(documents))
        .route("/v1/grants/{id}/qr", get(qr))
        .route("/v1/citizens/{national_id}/grants", get(for_citizen))
}

async fn scope(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<GrantView>> {
    Ok(Json(
        grants::scope(&state.vault, &caller, parse_id(&id)?).await?,
    ))
}

async fn documents(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let docs: Vec<DocumentView> = read::list_granted(&state.vault, &caller, parse_id(&id)?).await?;
    Ok(Json(serde_json::json!({ "documents": docs })))
}

async fn qr(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let svg = grants::receipt_qr(&state.vault, &caller, parse_id(&id)?).await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg))
}

async fn for_citizen(
    State(state): State<AppState>,
    caller: Caller,
    Path(national_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let national_id = NationalId::parse(&national_id)?;
    let list = grants::for_citizen(&state.vault, &caller, &national_id).await?;
    Ok(Json(serde_json::json!({ "grants": list })))
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
