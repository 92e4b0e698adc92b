//! Legal holds and erasure on request: `POST /v1/holds`, `GET /v1/holds`,
//! `POST /v1/holds/{id}/lift` (admin or auditor), and `POST /v1/documents/{id}/erase` (admin).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{json_rejection, parse_id, query_rejection};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::records::erasure::{self, EraseRequest};
use crate::records::holds::{self, HoldRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/holds", get(list).post(place))
        .route("/v1/holds/{id}/lift", post(lift))
        .route("/v1/documents/{id}/erase", post(erase))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(query_rejection)?;
    let holds = holds::list(&state.vault, &caller, q.all).await?;
    Ok(Json(json!({ "holds": holds })))
}

async fn place(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<HoldRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<holds::HoldView>), ApiError> {
    let Json(req) = body.map_err(json_rejection)?;
    let hold = holds::place(&state.vault, &caller, req).await?;
    Ok((StatusCode::CREATED, Json(hold)))
}

async fn lift(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<holds::HoldView>, ApiError> {
    Ok(Json(
        holds::lift(&state.vault, &caller, parse_id(&id)?).await?,
    ))
}

async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<EraseRequest>, JsonRejection>,
) -> Result<Json<erasure::ErasedAnswer>, ApiError> {
    let id = parse_id(&id)?;
    let Json(req) = body.map_err(json_rejection)?;
    Ok(Json(
        erasure::erase_document(&state.vault, &caller, id, req).await?,
    ))
}
