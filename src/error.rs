use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::blob::BlobError;
use crate::crypto::KeyUnavailable;
use crate::db::DbError;
use crate::domain::DomainError;

/// The one error type. Every variant maps to a status and a stable code that clients may match
/// on; messages are for humans and may change. There is deliberately no blanket `From<E: Error>`:
/// each infrastructure failure is turned into [`ApiError::Internal`] (or `Unavailable`) at the
/// place that knows what it means, so a forgotten case cannot silently become a 500.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the national ID must be exactly 12 digits")]
    InvalidNationalId,
    #[error("{0}")]
    InvalidMetadata(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("the token has expired")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(String),
    #[error("the grant does not cover this request")]
    ScopeDenied,
    #[error("the grant has been revoked")]
    GrantRevoked,
    #[error("the grant has no uses left")]
    GrantExhausted,
    #[error("the grant has expired")]
    GrantExpired,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The document was erased: only its tombstone remains.
    #[error("the document was erased; only a record that it existed remains")]
    Erased,
    /// The citizen restricted the processing of their records (a request carried out): no
    /// grant is made over them and none reads until it is lifted.
    #[error(
        "the citizen has restricted the processing of their records ({0}); nothing is shared or \
         read through a grant until it is lifted"
    )]
    Restricted(String),
    /// A legal hold in force covers what was to be erased (the hold's reason and reference).
    #[error("a legal hold covers this document, so it is kept: {0}")]
    LegalHold(String),
    #[error("the upload exceeds the limit of {0} bytes")]
    PayloadTooLarge(u64),
    #[error("too many refused requests; wait a minute")]
    TooManyRequests,
    #[error("the upload stalled: nothing arrived for {0} seconds")]
    RequestTimeout(u64),
    #[error("the file is not a PDF, JPEG, PNG or TIFF")]
    UnsupportedMediaType,
    /// A CCCD's typed fields that its scan's QR code says otherwise (named, never their values).
    #[error(
        "the card's QR code says otherwise for: {}; check them against the card, or keep them \
         with a reason (card_override)",
        .0.join(", ")
    )]
    CardMismatch(Vec<&'static str>),
    /// Stored bytes failed authentication. No plaintext is ever sent with this.
    #[error("the stored document failed its integrity check")]
    Integrity(String),
    /// The disk under the database or the object store is full. Nothing was stored.
    #[error(
        "the vault's disk is full, so this request could not be recorded; try again once space is freed"
    )]
    InsufficientStorage(String),
    /// A dependency (database, object store, audit log) is not available.
    #[error("the service is temporarily unavailable")]
    Unavailable(String),
    /// Anything else. The cause is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidNationalId | Self::InvalidMetadata(_) | Self::CardMismatch(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Unauthenticated(_) | Self::TokenExpired => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_)
            | Self::ScopeDenied
            | Self::GrantRevoked
            | Self::GrantExhausted
            | Self::GrantExpired
            | Self::Restricted(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::LegalHold(_) => StatusCode::CONFLICT,
            Self::Erased => StatusCode::GONE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Integrity(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidNationalId => "invalid_national_id",
            Self::InvalidMetadata(_) => "invalid_metadata",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::TokenExpired => "token_expired",
            Self::Forbidden(_) => "forbidden",
            Self::ScopeDenied => "scope_denied",
            Self::GrantRevoked => "grant_revoked",
            Self::GrantExhausted => "grant_exhausted",
            Self::GrantExpired => "grant_expired",
            Self::NotFound => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Erased => "erased",
            Self::LegalHold(_) => "legal_hold",
            Self::Restricted(_) => "restricted",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::RequestTimeout(_) => "request_timeout",
            Self::TooManyRequests => "too_many_requests",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::CardMismatch(_) => "card_mismatch",
            Self::Integrity(_) => "integrity_error",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The error as an operator reads it at their own terminal or in the service's log: the
    /// message, and for server-side failures the cause (never sent to a client).
    pub fn for_operator(self) -> String {
        match self {
            Self::Internal(cause)
            | Self::Integrity(cause)
            | Self::Unavailable(cause)
            | Self::InsufficientStorage(cause) => cause,
            other => other.to_string(),
        }
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {err}"))
    }

    pub fn unavailable(context: &str, err: impl std::fmt::Display) -> Self {
        Self::Unavailable(format!("{context}: {err}"))
    }
}

/// A data key that could not be wrapped or unwrapped: its bytes failed, or the hardware security
/// module holding its master key did not answer.
impl From<crate::crypto::envelope::WrapError> for ApiError {
    fn from(e: crate::crypto::envelope::WrapError) -> Self {
        match e {
            crate::crypto::envelope::WrapError::Integrity(e) => Self::Integrity(e.to_string()),
            crate::crypto::envelope::WrapError::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

/// A key in the hardware security module that did not answer.
impl From<KeyUnavailable> for ApiError {
    fn from(e: KeyUnavailable) -> Self {
        Self::Unavailable(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Causes of server-side failures go to the log only; the client gets the generic text.
        match &self {
            Self::Internal(cause)
            | Self::Integrity(cause)
            | Self::Unavailable(cause)
            | Self::InsufficientStorage(cause) => {
                // Escaped: a cause may quote what a client sent.
                tracing::error!(code = self.code(), cause = %cause.escape_debug(), "request failed");
            }
            _ => {}
        }
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self {
                Self::TokenExpired => {
                    r#"Bearer realm="hoso", error="invalid_token", error_description="token expired""#
                }
                _ => r#"Bearer realm="hoso""#,
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Each layer below HTTP has its own error; these are the only places they become statuses.
impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable { .. } => Self::Unavailable(err.to_string()),
            DbError::DiskFull { .. } => Self::InsufficientStorage(err.to_string()),
            DbError::Constraint { .. } | DbError::Failed { .. } | DbError::Corrupt(_) => {
                Self::Internal(err.to_string())
            }
            // Refused as a tampered body is: nothing it would have allowed is sent.
            DbError::Tampered(_) => Self::Integrity(err.to_string()),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::Missing(_) => Self::Integrity(err.to_string()),
            BlobError::DiskFull { .. } => Self::InsufficientStorage(err.to_string()),
            BlobError::Unavailable { .. } => Self::Unavailable(err.to_string()),
            BlobError::Setting { .. } => Self::Internal(err.to_string()),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::InvalidNationalId => Self::InvalidNationalId,
            DomainError::InvalidInput(message) => Self::InvalidRequest(message),
            DomainError::InvalidMetadata(message) => Self::InvalidMetadata(message),
        }
    }
}
