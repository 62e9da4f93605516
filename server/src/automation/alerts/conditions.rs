//! The conditions alerts watch: a stream's lag and progress, the latest run's data quality,
//! and each department's point occupancy against the bottleneck thresholds.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use patientflow_ingest::stream::StreamSnapshot;
use patientflow_ingest::{QualityReport, TableRoot};
use patientflow_semantic::MetricQuery;
use patientflow_sql::Engine;
use patientflow_sql::rbac::{Access, Principal};

use super::{Alert, AlertsConfig, Severity};
use crate::automation::jobs::Job;
use crate::error::{Error, Result};

/// When each condition holds.
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    /// Red occupancy; amber is the semantic model's bottleneck threshold.
    pub(crate) red: f64,
    pub(crate) stall: chrono::Duration,
    pub(crate) max_lag: i64,
    pub(crate) quarantine_share: f64,
    pub(crate) rule_counts: std::collections::BTreeMap<String, u64>,
    pub(crate) stale_stays: u64,
}

impl Thresholds {
    pub(crate) fn from_config(c: &AlertsConfig) -> Self {
        Self {
            red: c.red_occupancy.unwrap_or(0.92),
            stall: chrono::Duration::seconds(c.stream_stall_seconds.unwrap_or(300) as i64),
            max_lag: c.stream_max_lag.unwrap_or(100_000),
            quarantine_share: c.quarantine_share.unwrap_or(0.05),
            rule_counts: c.rule_counts.clone(),
            stale_stays: c.stale_stays.unwrap_or(5),
        }
    }
}

/// A stream is stalled when its source has records waiting and no batch has become visible
/// for the stall time; it is behind when the records waiting exceed the lag threshold.
pub(crate) fn stream(
    job: &Job,
    s: &StreamSnapshot,
    t: &Thresholds,
    now: DateTime<Utc>,
) -> Vec<Alert> {
    let waiting: i64 = s.lag.iter().map(|(_, n)| (*n).max(0)).sum();
    let mut alerts = Vec::new();
    let last = s.last_batch_at.and_then(DateTime::from_timestamp_micros);
    let idle_for = last.map(|l| now - l);
    if waiting > 0 && idle_for.is_none_or(|d| d >= t.stall) {
        let mut a = Alert::new(
            "stream_stalled",
            format!("stream_stalled:{}", job.name),
            Severity::Critical,
            format!(
                "stream {} has {waiting} records waiting and no batch for {}",
                job.name,
                idle_for.map_or("its whole run".to_string(), |d| format!(
                    "{} s",
                    d.num_seconds()
                ))
            ),
        );
        a.job = Some(job.name.clone());
        a.value = idle_for.map(|d| d.num_seconds() as f64);
        a.threshold = Some(t.stall.num_seconds() as f64);
        alerts.push(a);
    }
    if waiting > t.max_lag {
        let mut a = Alert::new(
            "stream_lag",
            format!("stream_lag:{}", job.name),
            Severity::Warning,
            format!(
                "stream {} is {waiting} records behind (threshold {})",
                job.name, t.max_lag
            ),
        );
        a.job = Some(job.name.clone());
        a.value = Some(waiting as f64);
        a.threshold = Some(t.max_lag as f64);
        alerts.push(a);
    }
    alerts
}

/// What the data conditions read.
#[derive(Debug)]
pub(crate) struct Checks {
    root: TableRoot,
    engine: Arc<Engine>,
}

impl Checks {
    pub(crate) fn new(root: TableRoot, engine: Arc<Engine>) -> Self {
        Self { root, engine }
    }

    /// The latest run's quarantine share per dataset, each rule's count against its own
    /// threshold, and stale open stays per department (contract §5.1).
    pub(crate) async fn quality(&self, t: &Thresholds) -> Result<Vec<Alert>> {
        let report = QualityReport::load(&self.root).await?;
        let mut alerts = Vec::new();
        let Some(run) = &report.latest_run_id else {
            return Ok(alerts);
        };
        for (dataset, c) in &report.datasets {
            if c.records_in == 0 {
                continue;
            }
            let share = c.quarantined as f64 / c.records_in as f64;
            if share > t.quarantine_share {
                let mut a = Alert::new(
                    "quarantine_share",
                    format!("quarantine_share:{dataset}"),
                    Severity::Warning,
                    format!(
                        "{dataset}: {:.1}% of the records of run {run} were quarantined (threshold {:.1}%)",
                        share * 100.0,
                        t.quarantine_share * 100.0
                    ),
                );
                a.value = Some(share);
                a.threshold = Some(t.quarantine_share);
                alerts.push(a);
            }
        }
        for (rule, limit) in &t.rule_counts {
            let n = report.latest.rules.get(rule).copied().unwrap_or(0);
            if n > *limit {
                let mut a = Alert::new(
                    "rule_count",
                    format!("rule_count:{rule}"),
                    Severity::Warning,
                    format!("rule {rule} matched {n} records in run {run} (threshold {limit})"),
                );
                a.value = Some(n as f64);
                a.threshold = Some(*limit as f64);
                alerts.push(a);
            }
        }
        for o in &report.open_stays {
            if o.stale > t.stale_stays {
                let mut a = Alert::new(
                    "stale_stays",
                    format!("stale_stays:{}:{}", o.hospital_id, o.department),
                    Severity::Warning,
                    format!(
                        "hospital {} {}: {} open stays with no event for too long (stale, out of the census; threshold {})",
                        o.hospital_id, o.department, o.stale, t.stale_stays
                    ),
                );
                a.hospital_id = Some(o.hospital_id);
                a.department = Some(o.department.clone());
                a.value = Some(o.stale as f64);
                a.threshold = Some(t.stale_stays as f64);
                alerts.push(a);
            }
        }
        Ok(alerts)
    }

    /// Each department's point occupancy (the latest hour of the census): amber at the
    /// bottleneck threshold, red at the red one.
    pub(crate) async fn bottlenecks(&self, t: &Thresholds) -> Result<Vec<Alert>> {
        if self
            .engine
            .table_version("gold", "fact_census_hourly")
            .await?
            .is_none()
        {
            // No gold yet: nothing to judge.
            return Ok(Vec::new());
        }
        let amber = self.engine.model().bottleneck_threshold;
        let access = Arc::new(Access::unrestricted(Principal {
            oid: "patientflow-alerts".into(),
            ..Principal::default()
        }));
        let query = MetricQuery {
            metrics: vec!["occupancy_rate_point".into()],
            dimensions: vec!["hospital".into(), "department".into()],
            ..MetricQuery::default()
        };
        let result = self
            .engine
            .session(access, "alerts")?
            .metric(&query)
            .await?;
        let mut alerts = Vec::new();
        for b in result.batches.iter() {
            let column = |name: &str| {
                b.column_by_name(name)
                    .ok_or_else(|| Error::Jobs(format!("occupancy: no column {name}")))
            };
            let hospital = column("hospital")?;
            let department = column("department")?;
            let rate = column("occupancy_rate_point")?;
            let rate = datafusion::arrow::compute::cast(rate, &DataType::Float64)
                .map_err(|e| Error::Jobs(format!("occupancy: {e}")))?;
            let rate = rate.as_primitive::<Float64Type>();
            let department = datafusion::arrow::compute::cast(department, &DataType::Utf8)
                .map_err(|e| Error::Jobs(format!("occupancy: {e}")))?;
            let department = department.as_string::<i32>();
            for i in 0..b.num_rows() {
                if rate.is_null(i) || department.is_null(i) {
                    continue;
                }
                let hospital_id = match hospital.data_type() {
                    DataType::Int32 => hospital.as_primitive::<Int32Type>().value(i),
                    _ => hospital.as_primitive::<Int64Type>().value(i) as i32,
                };
                let (value, dept) = (rate.value(i), department.value(i));
                let severity = if value >= t.red {
                    Severity::Critical
                } else if value >= amber {
                    Severity::Warning
                } else {
                    continue;
                };
                let (colour, threshold) = match severity {
                    Severity::Critical => ("red", t.red),
                    Severity::Warning => ("amber", amber),
                };
                let mut a = Alert::new(
                    "bottleneck",
                    format!("bottleneck:{hospital_id}:{dept}"),
                    severity,
                    format!(
                        "hospital {hospital_id} {dept}: {:.0}% of beds occupied ({colour} from {:.0}%)",
                        value * 100.0,
                        threshold * 100.0
                    ),
                );
                a.hospital_id = Some(hospital_id);
                a.department = Some(dept.to_string());
                a.value = Some(value);
                a.threshold = Some(if severity == Severity::Critical {
                    t.red
                } else {
                    amber
                });
                alerts.push(a);
            }
        }
        Ok(alerts)
    }
}
