//! `GET /v1/openapi.json`: the HTTP contract, as the repository's `docs/openapi.json` holds it
//! (embedded at build time, so the served document is the one the code was built with; a test
//! proves every route is in it and every path in it is routed).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::AppState;

pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
