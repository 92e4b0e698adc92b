//! HTTP: one file per resource, each with its `router()`. Handlers parse input, call one function
//! of the records service, and shape the response; they never touch SQL, objects or keys.

mod audit;
mod documents;
mod grants;
mod health;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(documents::router(&state))
        .merge(grants::router())
        .merge(audit::router())
        .merge(health::router())
        .fallback(|| async { ApiError::NotFound })
}

/// A document or grant id from the path. Anything that is not a UUID cannot name one, so it is
/// simply not found (and never reaches storage).
pub fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::NotFound)
}

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    ApiError::InvalidRequest(rejection.body_text())
}

pub fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::InvalidRequest(rejection.body_text())
}
