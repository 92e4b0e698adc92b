//! Liveness, readiness, metrics and the public keys.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::Role;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let vault = &state.vault;
    let db = vault.db.ping().await;
    let store = vault.blobs.ready().await;
    // A full disk under the database or the store: every write, audit entries included, is
    // about to fail, so stop taking traffic before that.
    let min_free = state.settings.min_free_bytes;
    let database_free = vault.db.free_bytes();
    let storage_free = vault.blobs.free_bytes();
    let disk_full = [database_free, storage_free]
        .into_iter()
        .flatten()
        .any(|free| free < min_free);
    // Key files are read at start-up and kept in memory; a token is asked now (bounded by
    // HOSO_PKCS11_TIMEOUT_MS, on its own threads).
    let keys = vault.keys().hsm().is_none_or(|hsm| hsm.ready());
    let draining = state.lifecycle.is_draining();
    // The database's log went behind what this process committed: nothing it says can be
    // trusted, and the balancer should stop sending traffic here.
    let alarm = vault.checkpoints.alarm();
    let ok = db && store && keys && !disk_full && !draining && alarm.is_none();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ok,
            "database": db,
            "storage": store,
            "keys": keys,
            "disk_full": disk_full,
            "draining": draining,
            "audit_log_rolled_back": alarm,
            "database_free_bytes": database_free,
            "storage_free_bytes": storage_free,
        })),
    )
}

/// Takes an admin or auditor token, whoever asks (or `HOSO_METRICS_PUBLIC=true`): counts of
/// reads and refusals are not for the world, and a peer's address says nothing of who it is (a
/// reverse proxy on the same machine makes every client look local).
async fn metrics(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    if !state.settings.metrics_public {
        caller?.require(&[Role::Admin, Role::Auditor])?;
    }
    // Gauges read at scrape time from the database: citizens' requests open, and past a legal
    // deadline.
    let (open, overdue) =
        crate::db::requests::counts(&state.vault.db.pool, crate::db::now_ms()).await?;
    let mut body = state.vault.metrics.render();
    if let Some(hsm) = state.vault.keys().hsm() {
        body.push_str(&hsm.render_metrics());
    }
    body.push_str(&format!(
        "# TYPE hoso_requests_open gauge\nhoso_requests_open {open}\n\
         # TYPE hoso_requests_overdue gauge\nhoso_requests_overdue {overdue}\n"
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.vault.keys().jwks())
}
