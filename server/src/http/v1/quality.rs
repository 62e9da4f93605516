//! `GET /api/v1/quality/latest`: the data-quality report of the latest ingest run.

use axum::Json;
use axum::extract::State;
use patientflow_ingest::QualityReport;

use crate::http::AppState;
use crate::http::error::ApiError;

/// The latest run's counts and the totals over all runs (the JSON of
/// `patientflow quality report --format json`).
#[utoipa::path(
    get,
    path = "/api/v1/quality/latest",
    tag = "quality",
    responses(
        (status = 200, description = "the report: records_in, silver_rows, quarantined, duplicates, rules, per dataset", body = Object),
    )
)]
pub(crate) async fn latest(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report = QualityReport::load(&state.root)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        serde_json::to_value(&report).map_err(ApiError::internal)?,
    ))
}
