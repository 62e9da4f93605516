//! `GET /api/v1/freshness`: how far behind the events gold is, for the dashboard's header.

use axum::Json;
use axum::extract::State;

use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::error::ApiError;

/// Seconds behind after which the dashboard shows the data as late (amber).
pub(crate) const WARN_AFTER_SECONDS: f64 = 120.0;

/// The receipt time of the newest record visible in gold, when gold last committed, and how
/// many seconds behind now the data is. Counts only; any signed-in caller may ask.
#[utoipa::path(
    get,
    path = "/api/v1/freshness",
    tag = "quality",
    responses(
        (status = 200, description = "data_as_of, refreshed_at (RFC 3339 or null), seconds_behind, warn_after_seconds", body = Object),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn freshness(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let f = patientflow_ingest::gold::freshness(&state.root)
        .await
        .map_err(ApiError::internal)?;
    let now = chrono::Utc::now().timestamp_micros();
    let time = |t: Option<i64>| {
        t.and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339())
    };
    Ok(Json(serde_json::json!({
        "data_as_of": time(f.data_as_of),
        "refreshed_at": time(f.refreshed_at),
        "seconds_behind": f.data_as_of.map(|t| ((now - t).max(0) as f64) / 1e6),
        "warn_after_seconds": WARN_AFTER_SECONDS,
    })))
}
