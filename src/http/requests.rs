//! A citizen's requests under Law 91/2025: `POST`/`GET /v1/citizens/{national_id}/requests`
//! (the citizen, or a clerk at the desk), `GET /v1/requests` (the open queue, the nearest
//! deadline first), `POST /v1/requests/{id}` (a clerk moves it on),
//! `POST /v1/restrictions/{id}/lift`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{json_rejection, parse_id};
use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::NationalId;
use crate::error::ApiError;
use crate::records::requests::{self, FileRequest, RequestView, UpdateRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/citizens/{national_id}/requests",
            get(for_citizen).post(file),
        )
        .route("/v1/requests", get(queue))
        .route("/v1/requests/{id}", post(update))
        .route("/v1/restrictions/{id}/lift", post(lift))
}

async fn file(
    State(state): State<AppState>,
    caller: Caller,
    Path(national_id): Path<String>,
    body: Result<Json<FileRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let national_id = NationalId::parse(&national_id)?;
    let Json(req) = body.map_err(json_rejection)?;
    let view = requests::file(&state.vault, &caller, &national_id, req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn for_citizen(
    State(state): State<AppState>,
    caller: Caller,
    Path(national_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let national_id = NationalId::parse(&national_id)?;
    let list = requests::for_citizen(&state.vault, &caller, &national_id).await?;
    Ok(Json(json!({ "requests": list })))
}

async fn queue(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let list = requests::queue(&state.vault, &caller).await?;
    Ok(Json(json!({ "requests": list })))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<UpdateRequest>, JsonRejection>,
) -> Result<Json<RequestView>, ApiError> {
    let id = parse_id(&id)?;
    let Json(req) = body.map_err(json_rejection)?;
    Ok(Json(
        requests::update(&state.vault, &caller, id, req).await?,
    ))
}

async fn lift(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    requests::lift_restriction(&state.vault, &caller, parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
