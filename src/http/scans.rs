//! `POST /v1/scans/read-card` (clerk): the body is a scan of a CCCD (PNG, JPEG or TIFF); the
//! answer is what its QR code says, `{"found": false}`, or `{"found": true, "recognised":
//! false}` for a QR that is not a chip CCCD's. Nothing is stored.

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Caller;
use crate::card::CardRead;
use crate::domain::format_date;
use crate::error::ApiError;

pub fn router(state: &AppState) -> Router<AppState> {
    let limit = usize::try_from(state.vault.limits.card_max_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/scans/read-card", post(read_card))
        .layer(DefaultBodyLimit::max(limit))
}

async fn read_card(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let image = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.vault.limits.card_max_bytes)
        } else {
            ApiError::InvalidRequest(rejection.body_text())
        }
    })?;
    let read = crate::records::card::read_card(&state.vault, &caller, image).await?;
    Ok(Json(match read {
        CardRead::Recognised(card) => json!({
            "found": true,
            "recognised": true,
            "fields": {
                "national_id": card.number.expose(),
                "old_id": card.old_number,
                "holder_name": card.name,
                "birth_date": format_date(card.birth_date),
                "sex": card.sex,
                "address": card.address,
                "issued_on": format_date(card.issued_on),
                "expires_on": card.expires_on.map(format_date),
            },
        }),
        CardRead::NotRecognised(_) => json!({ "found": true, "recognised": false }),
        CardRead::NotFound => json!({ "found": false }),
    }))
}
