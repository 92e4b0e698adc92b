//! Liveness, readiness, metrics and the public keys.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = state.vault.db.ping().await;
    let store = state.vault.blobs.ready().await;
    // Keys are loaded at start-up and kept in memory: present if we are running.
    let ok = db && store;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ok, "database": db, "storage": store, "keys": true})),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.vault.metrics.render(),
    )
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.vault.keys().jwks())
}
