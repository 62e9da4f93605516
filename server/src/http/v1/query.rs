//! `POST /api/v1/query`: a semantic query as JSON.

use axum::Json;
use axum::extract::State;
use patientflow_semantic::MetricQuery;

use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::encode::{JsonResult, json};
use crate::http::error::ApiError;

/// Runs a semantic query: metrics by dimensions over a time range and grain.
#[utoipa::path(
    post,
    path = "/api/v1/query",
    tag = "kpis",
    request_body = MetricQuery,
    responses(
        (status = 200, description = "the query's rows", body = JsonResult),
        (status = 400, description = "unknown metric or dimension, bad time range", body = crate::http::error::ErrorBody),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
        (status = 403, description = "the caller is not granted the tables the metric reads", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn query(
    State(state): State<AppState>,
    caller: Caller,
    Json(query): Json<MetricQuery>,
) -> Result<Json<JsonResult>, ApiError> {
    let result = caller.session(&state)?.metric(&query).await?;
    Ok(Json(json(&result)?))
}
