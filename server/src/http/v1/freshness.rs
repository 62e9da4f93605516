//! `GET /api/v1/freshness`: how far behind the events gold is, for the dashboard's header.

use axum::Json;
use axum::extract::State;

use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::error::ApiError;

/// Seconds behind after which the dashboard shows the data as late (amber).
pub(crate) const WARN_AFTER_SECONDS: f64 = 120.0;

/// Seconds between the newest event and the census time after which gold is catching up
/// (amber): its figures "now" lack the events since (a backlog or replay arriving now).
pub(crate) const EVENTS_WARN_AFTER_SECONDS: f64 = 3600.0;

/// The receipt time of the newest record visible in gold and how many seconds behind now it
/// is; the newest event time and how far before the census time it lies; when gold last
/// committed. Counts only; any signed-in caller may ask.
#[utoipa::path(
    get,
    path = "/api/v1/freshness",
    tag = "quality",
    responses(
        (status = 200, description = "data_as_of, events_as_of, census_as_of, refreshed_at (RFC 3339 or null), seconds_behind, warn_after_seconds, events_behind_seconds (census_as_of - events_as_of), events_warn_after_seconds", body = Object),
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
    let seconds = |micros: i64| (micros.max(0) as f64) / 1e6;
    let time = |t: Option<i64>| {
        t.and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339())
    };
    Ok(Json(serde_json::json!({
        "data_as_of": time(f.data_as_of),
        "events_as_of": time(f.events_as_of),
        "census_as_of": time(f.census_as_of),
        "refreshed_at": time(f.refreshed_at),
        "seconds_behind": f.data_as_of.map(|t| seconds(now - t)),
        "warn_after_seconds": WARN_AFTER_SECONDS,
        "events_behind_seconds": f.census_as_of.zip(f.events_as_of).map(|(c, e)| seconds(c - e)),
        "events_warn_after_seconds": EVENTS_WARN_AFTER_SECONDS,
    })))
}
