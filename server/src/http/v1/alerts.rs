//! `GET /api/v1/alerts`: the alerts that hold. A department's alerts (bottlenecks, stale
//! stays) are shown to callers whose grants reach that department; the pipeline's (jobs, the
//! stream, quarantine, rules) to callers granted `ops.alerts`.

use axum::Json;
use axum::extract::State;

use crate::automation::{Alert, alerts};
use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::error::ApiError;

/// The alerts that hold, most severe first: from this process's scheduler, or, in a process
/// that only serves, from `ops/alerts`. `checked_at` is when the scheduler last evaluated the
/// data conditions (quality, occupancy) — `null` before its first evaluation, when an empty
/// list means "not looked yet", not "all clear" — and always `null` from `ops/alerts`.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "ops",
    responses(
        (status = 200, description = "{\"alerts\": [{key, fingerprint, condition, severity, job, hospital_id, department, summary, value, threshold, starts_at}], \"source\": \"scheduler\" | \"ops/alerts\", \"checked_at\": timestamp | null}", body = Object),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn active(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = caller.session(&state)?;
    let pipeline = session.require("ops", "alerts").await.is_ok();
    let (all, checked_at, source): (Vec<Alert>, _, _) = match &state.scheduler {
        Some(s) => (s.alerts().active(), s.alerts().checked_at(), "scheduler"),
        None => (
            alerts::active_in_table(&state.root)
                .await
                .map_err(ApiError::internal)?,
            None,
            "ops/alerts",
        ),
    };
    let access = session.access();
    let visible: Vec<Alert> = all
        .into_iter()
        .filter(|a| match (a.hospital_id, &a.department) {
            (Some(h), Some(d)) => access.admits("gold", "fact_census_hourly", h, d),
            _ => pipeline,
        })
        .collect();
    Ok(Json(serde_json::json!({
        "alerts": visible,
        "source": source,
        "checked_at": checked_at,
    })))
}
