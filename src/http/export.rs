//! `GET /v1/citizens/{national_id}/export`: a citizen's data as one signed ZIP (the citizen, or
//! a clerk fulfilling their access or provide request).

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::query_rejection;
use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::NationalId;
use crate::error::ApiError;
use crate::records::export::{self, ExportQuery};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/citizens/{national_id}/export", get(download))
}

async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(national_id): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let national_id = NationalId::parse(&national_id)?;
    let Query(q) = query.map_err(query_rejection)?;
    let out = export::export(&state.vault, &caller, &national_id, q).await?;
    let mut response = Body::from_stream(out.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    let disposition = format!("attachment; filename=\"{}\"", out.filename);
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
