//! HTTP: the router, the extractor that turns a request into a [`Caller`](crate::auth::Caller),
//! and one file per resource, each with its `router()`. Handlers parse input, call one function
//! of the records service, and shape the response; SQL, objects and document keys stay below.

mod audit;
mod caller;
mod documents;
mod grants;
mod health;
mod openapi;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// The whole HTTP API over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(documents::router(&state))
        .merge(grants::router())
        .merge(audit::router())
        .merge(health::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let m = &state.vault.metrics;
    match response.status().as_u16() {
        200..=299 => Metrics::inc(&m.responses_2xx),
        400..=499 => Metrics::inc(&m.responses_4xx),
        500..=599 => Metrics::inc(&m.responses_5xx),
        _ => {}
    }
    response
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
