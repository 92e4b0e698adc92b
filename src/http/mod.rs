//! HTTP: the router, the extractor that turns a request into a [`Caller`](crate::auth::Caller),
//! and one file per resource, each with its `router()`. Handlers parse input, call one function
//! of the records service, and shape the response; SQL, objects and document keys stay below.

mod audit;
mod caller;
mod console;
mod documents;
mod export;
mod grants;
mod health;
mod holds;
mod me;
mod openapi;
mod requests;
mod scans;
pub mod server;
mod sessions;
mod sign_in;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use uuid::Uuid;

use crate::app::{AppState, InFlight, Lifecycle};
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
        .merge(me::router())
        .merge(sign_in::router())
        .merge(sessions::router())
        .merge(holds::router())
        .merge(requests::router())
        .merge(export::router())
        .merge(scans::router(&state))
        .merge(console::router())
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::map_response(security_headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), in_flight))
        .with_state(state)
}

/// While draining, refuses new requests (but `/readyz`, which says why, and `/healthz`: the
/// process is alive); otherwise counts the
/// request as in flight until its response's last byte has gone.
async fn in_flight(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let probe = matches!(request.uri().path(), "/readyz" | "/healthz");
    if state.lifecycle.is_draining() && !probe {
        // Not a failure worth an error line: a normal part of every deployment.
        let body = serde_json::json!({"error": {
            "code": "unavailable",
            "message": "this vault process is shutting down; try again",
        }});
        let mut response = (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(body),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let guard = Lifecycle::enter(&state);
    let response = next.run(request).await;
    response.map(|body| {
        Body::new(Counted {
            body,
            _guard: guard,
        })
    })
}

/// A response body that keeps its request counted as in flight until it is fully sent (or
/// dropped). Size hints pass through, so `Content-Length` is kept.
struct Counted {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Headers every answer carries: nothing is sniffed into another type, framed by another site
/// or sent on as a referrer; an API answer (personal data, copies) is never stored by a browser
/// or a proxy, and runs nothing if opened as a page. The console's files set their own policy.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
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

/// axum's default limit on a JSON body (2 MiB).
const JSON_LIMIT: u64 = 2 * 1024 * 1024;

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    // A body over the limit is too large, not malformed.
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(JSON_LIMIT);
    }
    ApiError::InvalidRequest(rejection.body_text())
}

pub fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::InvalidRequest(rejection.body_text())
}
