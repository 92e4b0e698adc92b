//! Documents: intake (multipart, streamed), verify, list, metadata, content, revoke.

use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{parse_id, query_rejection};
use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::{IntakeMetadata, NationalId};
use crate::error::{ApiError, ApiResult};
use crate::records::intake::{Intake, IntakeResult};
use crate::records::{read, status};

/// Room for the multipart framing and the metadata part on top of the file itself.
const ENVELOPE_ALLOWANCE: u64 = 128 * 1024;
/// The metadata part is a small JSON object; anything bigger is refused as it streams.
const MAX_METADATA_BYTES: usize = 64 * 1024;

pub fn router(state: &AppState) -> Router<AppState> {
    let limit = state
        .settings
        .max_upload_bytes
        .saturating_add(ENVELOPE_ALLOWANCE);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/v1/citizens/{national_id}/documents",
            post(intake).layer(DefaultBodyLimit::max(limit)).get(list),
        )
        .route("/v1/documents/{id}", get(metadata))
        .route("/v1/documents/{id}/content", get(content))
        .route("/v1/documents/{id}/verify", post(verify_document))
        .route("/v1/documents/{id}/revoke", post(revoke))
}

/// How long a client may stay silent, and how big its upload may be.
#[derive(Clone, Copy)]
struct Limits {
    stall: Duration,
    max_upload: u64,
}

fn multipart_error(err: MultipartError, limits: Limits) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(limits.max_upload)
    } else {
        ApiError::InvalidRequest(format!(
            "the multipart body is not valid: {}",
            err.body_text()
        ))
    }
}

async fn intake(
    State(state): State<AppState>,
    caller: Caller,
    Path(national_id): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let national_id = NationalId::parse(&national_id)?;
    let max = state.settings.max_upload_bytes;
    // A declared length over the limit is refused before one byte of the body is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max.saturating_add(ENVELOPE_ALLOWANCE)) {
        return Err(ApiError::PayloadTooLarge(max));
    }
    let mut multipart = multipart.map_err(|r| ApiError::InvalidRequest(r.body_text()))?;

    let mut intake = Intake::start(&state.vault, caller, &national_id).await?;
    let mut metadata = None;
    let limits = Limits {
        stall: Duration::from_secs(state.settings.upload_stall_seconds),
        max_upload: max,
    };
    let read = read_parts(&mut multipart, &mut intake, &mut metadata, limits).await;
    let result = match (read, metadata) {
        (Ok(()), Some(metadata)) => intake.finish(metadata).await,
        (Ok(()), None) => {
            intake.abort().await;
            return Err(ApiError::InvalidRequest(
                "the part `metadata` is required".into(),
            ));
        }
        (Err(err), _) => {
            intake.abort().await;
            return Err(err);
        }
    };
    Ok(match result? {
        IntakeResult::Created(doc) => {
            let location = format!("/v1/documents/{}", doc.id);
            let mut response = (StatusCode::CREATED, Json(doc)).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        IntakeResult::Existing(doc) => (StatusCode::OK, Json(doc)).into_response(),
    })
}

/// Every wait for the client is bounded: a client that stops sending is cut off.
async fn bounded<T>(
    limits: Limits,
    wait: impl Future<Output = Result<T, MultipartError>>,
) -> ApiResult<T> {
    tokio::time::timeout(limits.stall, wait)
        .await
        .map_err(|_| ApiError::RequestTimeout(limits.stall.as_secs()))?
        .map_err(|e| multipart_error(e, limits))
}

/// Reads the parts in whatever order they come: `metadata` (JSON) and `file` (the scan, fed to
/// the intake chunk by chunk). Any other part, or a part twice, is refused.
async fn read_parts(
    multipart: &mut Multipart,
    intake: &mut Intake<'_>,
    metadata: &mut Option<IntakeMetadata>,
    limits: Limits,
) -> ApiResult<()> {
    let mut file_seen = false;
    while let Some(mut field) = bounded(limits, multipart.next_field()).await? {
        match field.name() {
            Some("metadata") if metadata.is_none() => {
                let mut json = Vec::new();
                while let Some(chunk) = bounded(limits, field.chunk()).await? {
                    if json.len() + chunk.len() > MAX_METADATA_BYTES {
                        return Err(ApiError::InvalidMetadata(format!(
                            "metadata must be at most {MAX_METADATA_BYTES} bytes"
                        )));
                    }
                    json.extend_from_slice(&chunk);
                }
                let today = time::OffsetDateTime::now_utc().date();
                let parsed = IntakeMetadata::parse(&json, today)?;
                // A CCCD announced before its file: keep a copy to read its QR against.
                if !file_seen && parsed.doc_type == crate::domain::DocType::Cccd {
                    intake.keep_for_card();
                }
                *metadata = Some(parsed);
            }
            Some("file") if !file_seen => {
                file_seen = true;
                while let Some(chunk) = bounded(limits, field.chunk()).await? {
                    intake.push(&chunk).await?;
                }
            }
            Some(name @ ("metadata" | "file")) => {
                return Err(ApiError::InvalidRequest(format!(
                    "the part `{name}` was sent twice"
                )));
            }
            _ => {
                return Err(ApiError::InvalidRequest(
                    "only the parts `metadata` and `file` are accepted".into(),
                ));
            }
        }
    }
    if !file_seen {
        return Err(ApiError::InvalidRequest(
            "the part `file` is required".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    include: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(national_id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let national_id = NationalId::parse(&national_id)?;
    let Query(q) = q.map_err(query_rejection)?;
    let include_all = match q.include.as_deref() {
        None => false,
        Some("all") => true,
        Some(_) => return Err(ApiError::InvalidRequest("include may only be `all`".into())),
    };
    let documents = read::list(&state.vault, &caller, &national_id, include_all).await?;
    Ok(Json(json!({ "documents": documents })))
}

async fn metadata(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        read::metadata(&state.vault, &caller, parse_id(&id)?).await?,
    ))
}

async fn content(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let content = read::content(&state.vault, &caller, parse_id(&id)?).await?;
    let doc = &content.document;
    let digest = hex::decode(&doc.sha256).map_err(|e| ApiError::internal("stored digest", e))?;
    let repr_digest = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(digest)
    );
    let mut response = Response::new(Body::from_stream(content.body));
    let headers = response.headers_mut();
    let value =
        |text: &str| HeaderValue::from_str(text).map_err(|e| ApiError::internal("header", e));
    headers.insert(header::CONTENT_TYPE, value(&doc.content_type)?);
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(doc.size_bytes as u64),
    );
    headers.insert("repr-digest", value(&repr_digest)?);
    // The read's receipt: its audit entry's index and leaf hash. With a checkpoint and an
    // inclusion proof (`/v1/audit/proof/inclusion`) anyone can check it was logged.
    let receipt = format!(
        "seq={}; leaf={}",
        content.receipt.seq,
        base64::engine::general_purpose::STANDARD.encode(content.receipt.leaf)
    );
    headers.insert("hoso-audit-receipt", value(&receipt)?);
    if let Some(attestation) = &doc.attestation {
        headers.insert("hoso-attestation", value(attestation)?);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

async fn verify_document(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        status::verify_document(&state.vault, &caller, parse_id(&id)?).await?,
    ))
}

/// The optional body of a revoke: why, for the audit log.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: Option<String>,
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    // No body (as before) or `{"reason": "..."}`.
    let request: Option<RevokeRequest> = if body.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&body).map_err(|e| {
            ApiError::InvalidRequest(format!("the body is {{\"reason\": \"...\"}}: {e}"))
        })?)
    };
    let reason = request.and_then(|r| r.reason);
    Ok(Json(
        status::revoke(&state.vault, &caller, parse_id(&id)?, reason.as_deref()).await?,
    ))
}
