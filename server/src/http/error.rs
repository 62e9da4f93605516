//! One error type for the REST API, with stable machine-readable codes. 5xx bodies are
//! generic; the detail goes to the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: HTTP status, stable code, message for the client.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` (503 of a busy server).
    retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// Stable code: `unauthenticated`, `forbidden`, `invalid_query`, `not_read_only`,
    /// `syntax_error`, `query_timeout`, `resources_exhausted`, `overloaded` (with a
    /// `Retry-After` header), `storage_unavailable`, `not_found`, `unavailable`, `internal`.
    code: &'static str,
    /// What went wrong and how to fix it.
    message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_query",
            message: message.into(),
            retry_after: None,
        }
    }

    /// 404: no such resource.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503: this process does not offer it.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
            retry_after: None,
        }
    }

    /// 401: no usable token.
    pub(crate) fn unauthenticated(message: String) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message,
            retry_after: None,
        }
    }

    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; the server log has the details".into(),
            retry_after: None,
        }
    }
}

impl From<patientflow_sql::Error> for ApiError {
    fn from(e: patientflow_sql::Error) -> Self {
        use patientflow_sql::Error as E;
        let (status, code) = match &e {
            E::Syntax(_) => (StatusCode::BAD_REQUEST, "syntax_error"),
            E::NotReadOnly { .. } => (StatusCode::FORBIDDEN, "not_read_only"),
            E::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            E::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            E::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "query_timeout"),
            E::ResourcesExhausted(_) => (StatusCode::SERVICE_UNAVAILABLE, "resources_exhausted"),
            E::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            E::Internal(_) => return Self::internal(e),
        };
        let retry_after = match &e {
            E::Overloaded { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        Self {
            status,
            code,
            message: e.to_string(),
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
