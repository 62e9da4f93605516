//! `/api/v1/pipelines`: the jobs of a `patientflow run --serve` process, for Azure Data
//! Factory and operators. Starting a run answers `202 Accepted` with a `Location` to poll
//! until the run ends, which is the asynchronous pattern ADF's Web activity follows. Only
//! callers granted `ops.pipeline_runs` (the data-engineer role) may use them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::automation::{JobView, Run, Scheduler, Status, SubmitError, Submitted};
use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::error::ApiError;

/// The scheduler of this process, for a caller allowed to drive it.
async fn scheduler(state: &AppState, caller: Caller) -> Result<Arc<Scheduler>, ApiError> {
    caller
        .session(state)?
        .require("ops", "pipeline_runs")
        .await?;
    state.scheduler.clone().ok_or_else(|| {
        ApiError::unavailable(
            "this process runs no jobs: pipelines are driven through `patientflow run --serve`",
        )
    })
}

/// Seconds ADF waits before polling a run still going.
const RETRY_AFTER: &str = "10";

/// Path of a run.
fn location(run: &Run) -> String {
    format!("/api/v1/pipelines/runs/{}", run.run_id)
}

/// A run as JSON: `202 Accepted` with its `Location` and `Retry-After` while it is pending
/// (the asynchronous pattern Data Factory's Web activity follows until a `200`), else `200`.
fn run_response(run: &Run) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&location(run)) {
        headers.insert(header::LOCATION, v);
    }
    let status = if run.pending() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, headers, Json(run)).into_response()
}

/// Starts a run of a job (trigger `api`); poll the `Location` until it answers `200`, then
/// read `status` (`succeeded` or `failed`). For a stream job: `200` with its run while it
/// runs, else it is restarted at once (`202`, then `200` once running) — a keep-alive.
#[utoipa::path(
    post,
    path = "/api/v1/pipelines/{job}/runs",
    tag = "pipelines",
    params(("job" = String, Path, description = "job name from the config's [[jobs]]")),
    responses(
        (status = 202, description = "queued; `Location` is the run, `Retry-After` the polling interval", body = Object),
        (status = 200, description = "a stream job's run, running already", body = Object),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
        (status = 403, description = "the caller is not granted ops.pipeline_runs", body = crate::http::error::ErrorBody),
        (status = 404, description = "no such job", body = crate::http::error::ErrorBody),
        (status = 503, description = "this process runs no jobs", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
) -> Result<Response, ApiError> {
    let scheduler = scheduler(&state, caller).await?;
    match scheduler.submit(&job).await {
        Ok(Submitted::Queued(run)) => {
            let mut response = run_response(&run);
            *response.status_mut() = StatusCode::ACCEPTED;
            Ok(response)
        }
        Ok(Submitted::Running(run)) => Ok(run_response(&run)),
        Err(SubmitError::UnknownJob) => Err(ApiError::not_found(format!(
            "no job `{job}`; GET /api/v1/pipelines lists them"
        ))),
        Err(SubmitError::Internal(e)) => Err(ApiError::internal(e)),
    }
}

/// One run: `queued`, `running`, `succeeded`, `failed` (or `skipped`), with its attempt,
/// counts and error; `202` while it is pending, `200` once it has ended.
#[utoipa::path(
    get,
    path = "/api/v1/pipelines/runs/{id}",
    tag = "pipelines",
    params(("id" = String, Path, description = "run id")),
    responses(
        (status = 200, description = "the run, ended (or a stream's run, running)", body = Object),
        (status = 202, description = "the run, queued or running; poll again after `Retry-After`", body = Object),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
        (status = 403, description = "the caller is not granted ops.pipeline_runs", body = crate::http::error::ErrorBody),
        (status = 404, description = "no such run", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let scheduler = scheduler(&state, caller).await?;
    let run = scheduler
        .history()
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    Ok(run_response(&run))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunsQuery {
    job: Option<String>,
    limit: Option<usize>,
}

/// Runs, the most recently queued first: `job` to pick one job, `limit` (default 50).
#[utoipa::path(
    get,
    path = "/api/v1/pipelines/runs",
    tag = "pipelines",
    params(
        ("job" = Option<String>, Query, description = "only this job's runs"),
        ("limit" = Option<usize>, Query, description = "at most this many (default 50)"),
    ),
    responses(
        (status = 200, description = "{\"runs\": [...]}", body = Object),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
        (status = 403, description = "the caller is not granted ops.pipeline_runs", body = crate::http::error::ErrorBody),
        (status = 404, description = "no such job", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<RunsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let scheduler = scheduler(&state, caller).await?;
    if let Some(job) = &q.job
        && !scheduler.has_job(job)
    {
        return Err(ApiError::not_found(format!("no job `{job}`")));
    }
    let runs = scheduler
        .history()
        .list(q.job.as_deref(), q.limit.unwrap_or(50));
    Ok(Json(serde_json::json!({ "runs": runs })))
}

/// The jobs: kind, schedule and zone, triggers, next fire time, what runs and waits, and the
/// last run that ended.
#[utoipa::path(
    get,
    path = "/api/v1/pipelines",
    tag = "pipelines",
    responses(
        (status = 200, description = "{\"jobs\": [...]}", body = Object),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
        (status = 403, description = "the caller is not granted ops.pipeline_runs", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn jobs(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let scheduler = scheduler(&state, caller).await?;
    let jobs: Vec<JobView> = scheduler.jobs();
    let failed = jobs
        .iter()
        .filter(|j| {
            j.last_run
                .as_ref()
                .is_some_and(|r| r.status == Status::Failed)
        })
        .count();
    Ok(Json(serde_json::json!({ "jobs": jobs, "failing": failed })))
}
