//! `GET /api/v1/kpis/{metric}`: one metric, its query in URL parameters.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use patientflow_semantic::{Grain, MetricQuery, TimeRange};

use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::encode::{JsonResult, json};
use crate::http::error::ApiError;

/// Reserved parameters; every other parameter is a filter on the dimension of that name.
const RESERVED: [&str; 6] = ["dimensions", "from", "to", "grain", "order", "limit"];

/// One KPI. Parameters: `dimensions` (comma-separated), `from` / `to` (RFC 3339 or date,
/// half-open), `grain` (hour, day, week, month), `order` (comma-separated columns, `-` for
/// descending), `limit`, and any dimension name as a filter (`hospital=1,2`,
/// `department=ICU`).
#[utoipa::path(
    get,
    path = "/api/v1/kpis/{metric}",
    tag = "kpis",
    params(
        ("metric" = String, Path, description = "metric name, e.g. occupancy_rate; GET /api/v1/catalog lists them"),
        ("dimensions" = Option<String>, Query, description = "comma-separated dimensions to group by"),
        ("from" = Option<String>, Query, description = "inclusive start, RFC 3339 or YYYY-MM-DD"),
        ("to" = Option<String>, Query, description = "exclusive end, RFC 3339 or YYYY-MM-DD"),
        ("grain" = Option<String>, Query, description = "hour, day, week or month"),
        ("order" = Option<String>, Query, description = "comma-separated output columns, `-` for descending"),
        ("limit" = Option<usize>, Query, description = "at most this many rows"),
        ("hospital" = Option<String>, Query, description = "filter: comma-separated hospital ids (any dimension works the same way)"),
    ),
    responses(
        (status = 200, description = "the KPI rows", body = JsonResult),
        (status = 400, description = "unknown metric, dimension or parameter", body = crate::http::error::ErrorBody),
        (status = 401, description = "missing or invalid token", body = crate::http::error::ErrorBody),
        (status = 403, description = "the caller is not granted the tables the metric reads", body = crate::http::error::ErrorBody),
    )
)]
pub(crate) async fn kpi(
    State(state): State<AppState>,
    caller: Caller,
    Path(metric): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<JsonResult>, ApiError> {
    let query = metric_query(metric, &params)?;
    let result = caller.session(&state)?.metric(&query).await?;
    Ok(Json(json(&result)?))
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The semantic query the URL parameters describe.
fn metric_query(
    metric: String,
    params: &BTreeMap<String, String>,
) -> Result<MetricQuery, ApiError> {
    let get = |k: &str| params.get(k).map(String::as_str);
    let grain = get("grain")
        .map(Grain::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = get("limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("limit `{l}` is not a number")))
        })
        .transpose()?;
    let time_range = (get("from").is_some() || get("to").is_some()).then(|| TimeRange {
        from: get("from").map(String::from),
        to: get("to").map(String::from),
    });
    let filters = params
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .map(|(k, v)| {
            let values = list(v)
                .into_iter()
                .map(|v| match v.parse::<i64>() {
                    Ok(n) => serde_json::Value::from(n),
                    Err(_) => serde_json::Value::from(v),
                })
                .collect();
            (k.clone(), values)
        })
        .collect();
    Ok(MetricQuery {
        metrics: vec![metric],
        dimensions: get("dimensions").map(list).unwrap_or_default(),
        filters,
        time_range,
        grain,
        order: get("order").map(list).unwrap_or_default(),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_a_metric_query() {
        let params: BTreeMap<String, String> = [
            ("dimensions", "hospital,department"),
            ("hospital", "1,2"),
            ("department", "ICU"),
            ("from", "2026-11-01"),
            ("grain", "day"),
            ("order", "-census"),
            ("limit", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let q = metric_query("census".into(), &params).unwrap();
        assert_eq!(q.dimensions, ["hospital", "department"]);
        assert_eq!(
            q.filters["hospital"],
            [serde_json::json!(1), serde_json::json!(2)]
        );
        assert_eq!(q.filters["department"], [serde_json::json!("ICU")]);
        assert_eq!(q.grain, Some(Grain::Day));
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.time_range.unwrap().to, None);
        let bad: BTreeMap<String, String> = [("grain".to_string(), "year".to_string())].into();
        assert!(metric_query("census".into(), &bad).is_err());
    }
}
