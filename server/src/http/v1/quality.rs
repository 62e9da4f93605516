//! `GET /api/v1/quality/latest`: the data-quality report of the latest ingest run.

use std::sync::{Arc, Mutex};

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
    let mut report = state
        .quality
        .report(&state, &session.access().principal().oid)
        .await?;
    let access = session.access();
    report
        .open_stays
        .retain(|o| access.admits("gold", "fact_admission", o.hospital_id, &o.department));
    Ok(Json(
        serde_json::to_value(&report).map_err(ApiError::internal)?,
    ))
}

/// The tables a quality report is built from, at the versions it was built at.
type Versions = [Option<u64>; 3];

/// The last quality report built, kept while the tables it was built from stay at their
/// versions: a dashboard asks for it every refresh, and like a cached query answer it then
/// costs no slot; building it takes a slot of admission control as a query does.
#[derive(Debug, Default)]
pub(crate) struct QualityCache(Mutex<Option<(Versions, Arc<QualityReport>)>>);

impl QualityCache {
    async fn report(&self, state: &AppState, principal: &str) -> Result<QualityReport, ApiError> {
        let mut versions = [None; 3];
        for (v, (schema, table)) in versions.iter_mut().zip([
            ("ops", "quality_runs"),
            ("gold", "fact_admission"),
            ("gold", "dim_department"),
        ]) {
            *v = state.engine.table_version(schema, table).await?;
        }
        let cached = self.0.lock().ok().and_then(|c| c.clone());
        if let Some((_, report)) = cached.filter(|(at, _)| *at == versions) {
            return Ok((*report).clone());
        }
        let _permit = state.engine.permit(principal).await?;
        let report = QualityReport::load(&state.root)
            .await
            .map_err(ApiError::internal)?;
        if let Ok(mut cache) = self.0.lock() {
            *cache = Some((versions, Arc::new(report.clone())));
        }
        Ok(report)
    }
}
