//! `POST /api/v1/sql`: one read-only SQL statement; the answer in JSON, CSV or Arrow IPC.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::encode::negotiate;
use crate::http::error::ApiError;

/// The body of `POST /api/v1/sql`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlRequest {
    /// One read-only statement (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) over the
    /// `patientflow` catalog; the default schema is `gold`.
    sql: String,
}

/// Runs one read-only SQL statement. `Accept: text/csv` answers CSV,
/// `Accept: application/vnd.apache.arrow.stream` an Arrow IPC stream, anything else JSON.
#[utoipa::path(
    post,
    path = "/api/v1/sql",
    tag = "sql",
    request_body = SqlRequest,
    responses(
        (status = 200, description = "the result: JSON by default, CSV for `Accept: text/csv`, an Arrow IPC stream for `Accept: application/vnd.apache.arrow.stream`", body = crate::http::encode::JsonResult),
        (status = 400, description = "syntax error or invalid query", body = crate::http::error::ErrorBody),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
        (status = 403, description = "not a read-only statement, or a table the caller is not granted", body = crate::http::error::ErrorBody),
        (status = 503, description = "cancelled by the time or memory limit", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn sql(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(request): Json<SqlRequest>,
) -> Result<Response, ApiError> {
    let result = caller.session(&state)?.sql(&request.sql).await?;
    negotiate(&headers, &result)
}
