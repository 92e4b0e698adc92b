//! `GET /v1/audit`, `GET /v1/audit/verify`, `GET /v1/citizens/{national_id}/access-log`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};

use super::query_rejection;
use crate::app::AppState;
use crate::audit::Report;
use crate::auth::Caller;
use crate::domain::NationalId;
use crate::error::ApiResult;
use crate::records::auditing::{self, AccessLogQuery, AuditQuery, Page};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(query))
        .route("/v1/audit/verify", get(verify_log))
        .route("/v1/citizens/{national_id}/access-log", get(access_log))
}

async fn query(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Page>> {
    let Query(q) = q.map_err(query_rejection)?;
    Ok(Json(auditing::query(&state.vault, &caller, q).await?))
}

async fn verify_log(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Report>> {
    Ok(Json(auditing::verify_log(&state.vault, &caller).await?))
}

async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(national_id): Path<String>,
    q: Result<Query<AccessLogQuery>, QueryRejection>,
) -> ApiResult<Json<Page>> {
    let national_id = NationalId::parse(&national_id)?;
    let Query(q) = q.map_err(query_rejection)?;
    Ok(Json(
        auditing::access_log(&state.vault, &caller, &national_id, q).await?,
    ))
}
