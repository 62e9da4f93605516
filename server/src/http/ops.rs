//! Health, readiness, Prometheus metrics and the OpenAPI document.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Request counters by status class, and the server's start time.
#[derive(Debug)]
pub(crate) struct HttpStats {
    started: Instant,
    /// Requests answered with 2xx, 3xx, 4xx, 5xx.
    by_class: [AtomicU64; 4],
}

impl HttpStats {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            by_class: Default::default(),
        }
    }
}

/// Counts every request by the class of its status.
pub(crate) async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let class = (response.status().as_u16() / 100).clamp(2, 5) as usize - 2;
    state.stats.by_class[class].fetch_add(1, Ordering::Relaxed);
    response
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the gold tables exist and can be read.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "ready to answer KPI queries", body = String),
        (status = 503, description = "no gold tables yet", body = String),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state
        .engine
        .table_version("gold", "fact_census_hourly")
        .await
    {
        Ok(Some(_)) => (StatusCode::OK, "ready").into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: no gold tables under {} yet; run `patientflow ingest --data {}`",
                state.root.url(),
                state.root.url()
            ),
        )
            .into_response(),
    }
}

/// Prometheus text exposition of the query engine's and the HTTP server's counters.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let engine = state.engine.stats();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "patientflow_queries_total",
        "counter",
        "Queries answered (SQL, semantic, Flight SQL).",
        &[("", load(&engine.queries) as f64)],
    );
    metric(
        "patientflow_query_failures_total",
        "counter",
        "Queries that failed.",
        &[("", load(&engine.failures) as f64)],
    );
    metric(
        "patientflow_query_cache_hits_total",
        "counter",
        "Queries answered from the result cache.",
        &[("", load(&engine.cache_hits) as f64)],
    );
    metric(
        "patientflow_query_timeouts_total",
        "counter",
        "Queries cancelled by the time limit.",
        &[("", load(&engine.timeouts) as f64)],
    );
    metric(
        "patientflow_queries_denied_total",
        "counter",
        "Queries refused: the principal is not granted a table they read.",
        &[("", load(&engine.denied) as f64)],
    );
    metric(
        "patientflow_unauthenticated_requests_total",
        "counter",
        "Requests refused for a missing or invalid token (REST and Flight SQL).",
        &[("", load(&state.auth.refused) as f64)],
    );
    metric(
        "patientflow_queries_exhausted_total",
        "counter",
        "Queries cancelled for memory (past their share of the pool) or an oversized result.",
        &[("", load(&engine.exhausted) as f64)],
    );
    let admission = state.engine.admission();
    let waits = admission.stats();
    metric(
        "patientflow_queries_refused_total",
        "counter",
        "Queries refused by admission control, by reason (503 / RESOURCE_EXHAUSTED with Retry-After).",
        &[
            ("{reason=\"queue_full\"}", load(&waits.queue_full) as f64),
            (
                "{reason=\"queue_timeout\"}",
                load(&waits.queue_timeout) as f64,
            ),
        ],
    );
    metric(
        "patientflow_queries_executing",
        "gauge",
        "Queries executing now.",
        &[("", admission.executing() as f64)],
    );
    metric(
        "patientflow_query_slots",
        "gauge",
        "Queries that may execute at once.",
        &[("", admission.config().max_executing as f64)],
    );
    metric(
        "patientflow_query_queue_depth",
        "gauge",
        "Queries waiting for a slot now.",
        &[("", admission.waiting() as f64)],
    );
    metric(
        "patientflow_queries_admitted_total",
        "counter",
        "Queries given a slot (at once or after waiting).",
        &[("", load(&waits.admitted) as f64)],
    );
    metric(
        "patientflow_queries_queued_total",
        "counter",
        "Queries that had to wait for a slot.",
        &[("", load(&waits.queued) as f64)],
    );
    metric(
        "patientflow_query_queue_wait_seconds_total",
        "counter",
        "Time admitted queries waited for a slot (divide by patientflow_queries_admitted_total for the mean).",
        &[("", load(&waits.wait_micros) as f64 / 1e6)],
    );
    metric(
        "patientflow_query_memory_bytes",
        "gauge",
        "Bytes of the query memory pool held by executing queries.",
        &[("", state.engine.memory_reserved() as f64)],
    );
    metric(
        "patientflow_query_memory_limit_bytes",
        "gauge",
        "Size of the query memory pool.",
        &[("", state.engine.memory_limit() as f64)],
    );
    metric(
        "patientflow_query_seconds_total",
        "counter",
        "Time spent answering queries.",
        &[("", load(&engine.micros) as f64 / 1e6)],
    );
    let classes = [
        "{class=\"2xx\"}",
        "{class=\"3xx\"}",
        "{class=\"4xx\"}",
        "{class=\"5xx\"}",
    ];
    let requests: Vec<(&str, f64)> = classes
        .iter()
        .zip(&state.stats.by_class)
        .map(|(c, n)| (*c, load(n) as f64))
        .collect();
    metric(
        "patientflow_http_requests_total",
        "counter",
        "HTTP requests by status class.",
        &requests,
    );
    metric(
        "patientflow_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        &[("", state.stats.started.elapsed().as_secs_f64())],
    );
    if let Some(scheduler) = &state.scheduler {
        let mut runs: std::collections::BTreeMap<(String, &str), f64> = Default::default();
        for run in scheduler.history().list(None, usize::MAX) {
            *runs.entry((run.job, run.status.as_str())).or_default() += 1.0;
        }
        let runs: Vec<(String, f64)> = runs
            .into_iter()
            .map(|((job, status), n)| (format!("{{job=\"{job}\",status=\"{status}\"}}"), n))
            .collect();
        let mut alerts: std::collections::BTreeMap<&str, f64> =
            [("warning", 0.0), ("critical", 0.0)].into();
        for a in scheduler.alerts().active() {
            *alerts.entry(a.severity.as_str()).or_default() += 1.0;
        }
        let alerts: Vec<(String, f64)> = alerts
            .into_iter()
            .map(|(severity, n)| (format!("{{severity=\"{severity}\"}}"), n))
            .collect();
        for (name, help, samples) in [
            (
                "patientflow_pipeline_runs",
                "Runs in the history by job and state (queued, running, succeeded, failed, skipped).",
                &runs,
            ),
            (
                "patientflow_alerts_active",
                "Alerts that hold, by severity (warning is amber, critical red).",
                &alerts,
            ),
        ] {
            let samples: Vec<(&str, f64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
            metric(name, "gauge", help, &samples);
        }
    }
    if let Some(stream) = &state.stream {
        out.push_str(&super::stream::render_metrics(&stream.snapshot()));
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The OpenAPI 3 document.
pub(crate) async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], super::openapi_json()).into_response()
}
