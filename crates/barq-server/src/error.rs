//! The one error shape of the API, `{"error": {"code": "...", "message": "..."}}`, and the one
//! function that maps the engine's error kinds to HTTP statuses ([`status_of`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use barq_core::ErrorKind;
use serde::{Deserialize, Serialize};

/// The HTTP status and the machine-readable code (`ErrorKind::code`) of an engine error kind.
pub fn status_of(kind: ErrorKind) -> (StatusCode, &'static str) {
    let status = match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::ReadOnly => StatusCode::FORBIDDEN,
        // The cold store (or the database, while it closes) cannot serve this now; retry later.
        ErrorKind::Unavailable | ErrorKind::Closed => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::DataCorruption | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, kind.code())
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Machine-readable: `invalid_argument`, `not_found`, `unauthorized`, ...
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }

    /// 400 `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<barq_core::Error> for ApiError {
    fn from(e: barq_core::Error) -> Self {
        let (status, code) = status_of(e.kind());
        ApiError::new(status, code, e.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = %self.body.code, message = %self.body.message, "request failed");
        }
        let body = serde_json::json!({ "error": self.body });
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_status_and_a_distinct_code() {
        let kinds = [
            ErrorKind::InvalidArgument,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unavailable,
            ErrorKind::Closed,
            ErrorKind::DataCorruption,
            ErrorKind::Internal,
        ];
        let codes: std::collections::BTreeSet<_> = kinds.iter().map(|k| status_of(*k).1).collect();
        assert_eq!(codes.len(), kinds.len());
        assert_eq!(
            status_of(ErrorKind::InvalidArgument).0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status_of(ErrorKind::NotFound).0, StatusCode::NOT_FOUND);
        assert_eq!(status_of(ErrorKind::Conflict).0, StatusCode::CONFLICT);
        assert_eq!(
            status_of(ErrorKind::Unavailable).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
