//! The REST API, the dashboard and the operational endpoints (axum).
//!
//! `router(state)` builds everything, so tests can drive it without a socket.

mod caller;
mod dashboard;
mod encode;
mod error;
mod ops;
pub(crate) mod stream;
mod v1;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use patientflow_ingest::TableRoot;
use patientflow_sql::Engine;

use crate::auth::Auth;
use utoipa::OpenApi;

pub(crate) use ops::HttpStats;

use caller::BearerAuth;

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) root: TableRoot,
    pub(crate) stats: Arc<HttpStats>,
    pub(crate) auth: Arc<Auth>,
    /// The streaming ingest of this process, if it runs one (`demo`).
    pub(crate) stream: Option<Arc<patientflow_ingest::StreamStatus>>,
    /// The jobs of this process, if it runs them (`run --serve`, `demo`).
    pub(crate) scheduler: Option<Arc<crate::automation::Scheduler>>,
    /// The last quality report, while its tables are unchanged.
    pub(crate) quality: Arc<v1::quality::QualityCache>,
}

/// The OpenAPI 3 document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "patientflow",
        description = "Patient-flow KPIs over the gold star schema: occupancy, census, admissions and discharges, length of stay, ED waits, demographics; read-only SQL; data quality."
    ),
    paths(
        v1::kpis::kpi,
        v1::query::query,
        v1::sql::sql,
        v1::quality::latest,
        v1::freshness::freshness,
        v1::catalog::catalog,
        v1::pipelines::jobs,
        v1::pipelines::start,
        v1::pipelines::runs,
        v1::pipelines::run,
        v1::alerts::active,
        ops::healthz,
        ops::readyz,
        ops::metrics,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "kpis", description = "named KPIs of the semantic model"),
        (name = "sql", description = "read-only SQL over the patientflow catalog"),
        (name = "quality", description = "data-quality counts"),
        (name = "catalog", description = "tables, metrics and dimensions"),
        (name = "pipelines", description = "the jobs of `patientflow run --serve`: start a run (202 + Location), poll it, list runs"),
        (name = "ops", description = "health, readiness, Prometheus metrics and alerts"),
    )
)]
struct ApiDoc;

/// The OpenAPI document as JSON.
pub(crate) fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Every route.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/api/openapi.json", get(ops::openapi))
        .route("/api/v1/kpis/{metric}", get(v1::kpis::kpi))
        .route("/api/v1/query", post(v1::query::query))
        .route("/api/v1/sql", post(v1::sql::sql))
        .route("/api/v1/quality/latest", get(v1::quality::latest))
        .route("/api/v1/freshness", get(v1::freshness::freshness))
        .route("/api/v1/catalog", get(v1::catalog::catalog))
        .route("/api/v1/pipelines", get(v1::pipelines::jobs))
        .route("/api/v1/pipelines/runs", get(v1::pipelines::runs))
        .route("/api/v1/pipelines/runs/{id}", get(v1::pipelines::run))
        .route("/api/v1/pipelines/{job}/runs", post(v1::pipelines::start))
        .route("/api/v1/alerts", get(v1::alerts::active))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .with_state(state)
}
