//! A metric query: which metrics, grouped by which dimensions, over which time.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `{metrics, dimensions, filters, time range, grain, order, limit}` — the semantic layer's
/// query, as REST's `POST /api/v1/query` takes it and as views are declared.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricQuery {
    /// Metric names; each becomes a column.
    pub metrics: Vec<String>,
    /// Dimension names to group by; each becomes a column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<String>,
    /// Dimension name → the values to keep.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, Vec<Object>>)]
    pub filters: BTreeMap<String, Vec<serde_json::Value>>,
    /// The half-open time range `[from, to)`; open on a side that is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// Time grain; with one, a `period` column (start of the period, UTC) comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grain: Option<Grain>,
    /// Output columns to sort by, `-` in front for descending. Default: period, dimensions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// At most this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl MetricQuery {
    /// Its output key columns: `period` (with a grain), then the dimensions.
    pub fn key_names(&self) -> Vec<String> {
        self.grain
            .map(|_| crate::compile::PERIOD.to_string())
            .into_iter()
            .chain(self.dimensions.iter().cloned())
            .collect()
    }
}

/// A half-open time range; bounds are RFC 3339 timestamps or `YYYY-MM-DD` dates (midnight UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    /// Inclusive start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Exclusive end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl TimeRange {
    /// The bounds as UTC microseconds.
    pub fn bounds(&self) -> Result<(Option<i64>, Option<i64>)> {
        Ok((bound(self.from.as_deref())?, bound(self.to.as_deref())?))
    }
}

fn bound(text: Option<&str>) -> Result<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc).timestamp_micros()));
    }
    if let Some(t) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(Some(t.and_utc().timestamp_micros()));
    }
    Err(Error::InvalidQuery(format!(
        "time `{text}` is neither an RFC 3339 timestamp (2026-11-24T09:00:00Z) nor a date (2026-11-24)"
    )))
}

/// A time grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    /// Hours.
    Hour,
    /// Days (UTC).
    Day,
    /// ISO weeks, from Monday.
    Week,
    /// Calendar months.
    Month,
}

impl Grain {
    /// The `date_trunc` unit.
    pub fn unit(self) -> &'static str {
        match self {
            Grain::Hour => "hour",
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
        }
    }

    /// Parses a grain name, listing the grains there are on failure.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "hour" => Ok(Grain::Hour),
            "day" => Ok(Grain::Day),
            "week" => Ok(Grain::Week),
            "month" => Ok(Grain::Month),
            other => Err(Error::InvalidQuery(format!(
                "unknown grain `{other}`; known: hour, day, week, month"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_timestamps_and_dates() {
        let r = TimeRange {
            from: Some("2026-11-24".into()),
            to: Some("2026-11-24T10:00:00+01:00".into()),
        };
        let (from, to) = r.bounds().unwrap();
        assert_eq!(to.unwrap() - from.unwrap(), 9 * 3_600_000_000);
        let bad = TimeRange {
            from: Some("yesterday".into()),
            to: None,
        };
        assert!(
            bad.bounds()
                .unwrap_err()
                .to_string()
                .contains("`yesterday`")
        );
    }

    #[test]
    fn queries_read_from_json() {
        let q: MetricQuery = serde_json::from_str(
            r#"{"metrics":["admissions"],"dimensions":["gender"],"filters":{"hospital":[1,2]},
                "time_range":{"from":"2026-11-01"},"grain":"day","order":["-admissions"],"limit":5}"#,
        )
        .unwrap();
        assert_eq!(q.grain, Some(Grain::Day));
        assert_eq!(q.filters["hospital"].len(), 2);
        assert!(serde_json::from_str::<MetricQuery>(r#"{"metric":["x"]}"#).is_err());
    }
}
