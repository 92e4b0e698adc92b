//! `GET /v1/audit`, `GET /v1/audit/verify`, `GET /v1/citizens/{national_id}/access-log` (and a
//! proof per entry); the public checkpoint and proofs of the log's Merkle tree.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::query_rejection;
use crate::app::AppState;
use crate::audit::Report;
use crate::auth::Caller;
use crate::domain::NationalId;
use crate::error::{ApiError, ApiResult};
use crate::records::oversight::{
    self, AccessLogQuery, AuditQuery, ConsistencyProof, InclusionProof, Page,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(query))
        .route("/v1/audit/verify", get(verify_log))
        .route("/v1/citizens/{national_id}/access-log", get(access_log))
        .route(
            "/v1/citizens/{national_id}/access-log/{seq}/proof",
            get(access_proof),
        )
        .route("/v1/audit/checkpoint", get(checkpoint))
        .route("/v1/audit/proof/inclusion", get(inclusion))
        .route("/v1/audit/proof/consistency", get(consistency))
}

/// The latest signed checkpoint, as the note's text; `hoso-log-key` names the verifier key
/// (a witness pins it on first use). Public: it holds a size and a hash.
async fn checkpoint(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let (note, key) = oversight::checkpoint(&state.vault).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::HeaderName::from_static("hoso-log-key"), key),
        ],
        note,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    seq: i64,
    size: i64,
}

async fn inclusion(
    State(state): State<AppState>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> ApiResult<Json<InclusionProof>> {
    let Query(q) = q.map_err(query_rejection)?;
    Ok(Json(
        oversight::inclusion(&state.vault, q.seq, q.size).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: i64,
    to: i64,
}

async fn consistency(
    State(state): State<AppState>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> ApiResult<Json<ConsistencyProof>> {
    let Query(q) = q.map_err(query_rejection)?;
    Ok(Json(
        oversight::consistency(&state.vault, q.from, q.to).await?,
    ))
}

async fn access_proof(
    State(state): State<AppState>,
    caller: Caller,
    Path((national_id, seq)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let national_id = NationalId::parse(&national_id)?;
    let seq: i64 = seq.parse().map_err(|_| ApiError::NotFound)?;
    let proof = oversight::access_proof(&state.vault, &caller, &national_id, seq).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], proof))
}

async fn query(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Page>> {
    let Query(q) = q.map_err(query_rejection)?;
    Ok(Json(oversight::query(&state.vault, &caller, q).await?))
}

async fn verify_log(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Report>> {
    Ok(Json(oversight::verify_log(&state.vault, &caller).await?))
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
        oversight::access_log(&state.vault, &caller, &national_id, q).await?,
    ))
}
