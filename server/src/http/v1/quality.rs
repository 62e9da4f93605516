//! `GET /api/v1/quality/latest`: the data-quality report of the latest ingest run.

use axum::Json;
use axum::extract::State;
use patientflow_ingest::QualityReport;

use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::error::ApiError;

/// The latest run's counts and the totals over all runs (the JSON of
/// `patientflow quality report --format json`).
#[utoipa::path(
    get,
    path = "/api/v1/quality/latest",
    tag = "quality",
    responses(
        (status = 200, description = "the report: records_in, silver_rows, quarantined, duplicates, rules, per dataset; open_stays of the departments the caller reaches", body = Object),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
        (status = 403, description = "the caller is not granted ops.quality_runs", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn latest(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    // The counts carry no patient rows, so a grant of the table is all it takes; the open
    // stays are per department, and shown for the departments the caller's stays reach.
    let session = caller.session(&state)?;
    session.require("ops", "quality_runs").await?;
    let mut report = QualityReport::load(&state.root)
        .await
        .map_err(ApiError::internal)?;
    let access = session.access();
    report
        .open_stays
        .retain(|o| access.admits("gold", "fact_admission", o.hospital_id, &o.department));
    Ok(Json(
        serde_json::to_value(&report).map_err(ApiError::internal)?,
    ))
}
