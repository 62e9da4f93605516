//! Alerts: conditions on jobs, the stream, data quality and occupancy, each under a stable
//! key (condition + job or hospital/department). An alert fires once, repeats at most every
//! `repeat_interval` while it holds, and sends a resolved notice when it clears; a change of
//! severity (a bottleneck going from amber to red) is a new notice. Notices go to the log,
//! `ops/alerts`, and the configured webhooks (Microsoft Teams, Alertmanager-style).

mod conditions;
mod sinks;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use patientflow_ingest::{StreamStatus, TableRoot};
use serde::{Deserialize, Serialize};

pub(crate) use conditions::{Checks, Thresholds};
pub(crate) use sinks::Sinks;

use super::history::Run;
use super::jobs::Job;

/// `[alerts]` of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsConfig {
    /// An alert that holds is sent again at most this often (default 60).
    pub(crate) repeat_interval_minutes: Option<u64>,
    /// Microsoft Teams Workflows webhook URL (a secret: better
    /// `PATIENTFLOW_TEAMS_WEBHOOK_URL`).
    pub(crate) teams_url: Option<String>,
    /// Generic webhook receiving Alertmanager's v4 JSON (a secret: better
    /// `PATIENTFLOW_ALERT_WEBHOOK_URL`).
    pub(crate) webhook_url: Option<String>,
    /// Occupancy from which a bottleneck is red (default 0.92); amber is the model's
    /// bottleneck threshold (0.85).
    pub(crate) red_occupancy: Option<f64>,
    /// A stream with consumer lag and no batch for this long is stalled (default 300).
    pub(crate) stream_stall_seconds: Option<u64>,
    /// Consumer lag, in records, over which a stream falls behind (default 100000).
    pub(crate) stream_max_lag: Option<i64>,
    /// A dataset's quarantine share in the latest run over which data quality breaches
    /// (default 0.05).
    pub(crate) quarantine_share: Option<f64>,
    /// Per rule: the count in the latest run over which it breaches.
    #[serde(default)]
    pub(crate) rule_counts: BTreeMap<String, u64>,
    /// Stale open stays (contract §5.1), per department, over which it breaches (default 5).
    pub(crate) stale_stays: Option<u64>,
    /// How often the data conditions are checked besides after every run (default 60).
    pub(crate) check_seconds: Option<u64>,
}

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    /// Amber.
    Warning,
    /// Red.
    Critical,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alert while it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Alert {
    /// Stable: condition plus job or hospital/department.
    pub(crate) key: String,
    /// Hash of the key (Alertmanager's `fingerprint`).
    pub(crate) fingerprint: String,
    /// `job_failed`, `stream_stalled`, `stream_lag`, `quarantine_share`, `rule_count`,
    /// `stale_stays`, `bottleneck`.
    pub(crate) condition: String,
    pub(crate) severity: Severity,
    pub(crate) job: Option<String>,
    pub(crate) hospital_id: Option<i32>,
    pub(crate) department: Option<String>,
    /// One line for a person.
    pub(crate) summary: String,
    pub(crate) value: Option<f64>,
    pub(crate) threshold: Option<f64>,
    pub(crate) starts_at: DateTime<Utc>,
    /// Set on the resolved notice.
    pub(crate) ends_at: Option<DateTime<Utc>>,
}

impl Alert {
    /// An alert of `condition` under `key`, starting now.
    pub(crate) fn new(condition: &str, key: String, severity: Severity, summary: String) -> Self {
        Self {
            fingerprint: crate::audit::sha256_hex(key.as_bytes())[..16].to_string(),
            key,
            condition: condition.to_string(),
            severity,
            job: None,
            hospital_id: None,
            department: None,
            summary,
            value: None,
            threshold: None,
            starts_at: Utc::now(),
            ends_at: None,
        }
    }
}

/// A notice about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    Firing,
    Repeat,
    Resolved,
}

impl Notice {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Notice::Firing => "firing",
            Notice::Repeat => "repeat",
            Notice::Resolved => "resolved",
        }
    }
}

#[derive(Debug)]
struct Active {
    /// The evaluation that raised it, which alone resolves it.
    group: String,
    alert: Alert,
    last_sent: DateTime<Utc>,
}

/// The alerts of one process.
#[derive(Debug)]
pub(crate) struct Alerts {
    active: Mutex<BTreeMap<String, Active>>,
    repeat: chrono::Duration,
    sinks: Sinks,
    checks: Option<conditions::Checks>,
    thresholds: Thresholds,
    /// Serialises evaluations, so notices go out in order.
    evaluating: tokio::sync::Mutex<()>,
    /// When the data conditions (quality, occupancy) were last evaluated; `None` before the first.
    checked_at: Mutex<Option<DateTime<Utc>>>,
}

impl Alerts {
    /// Alerts sent to `sinks`; with `checks`, the data conditions are evaluated too.
    pub(crate) fn new(
        config: &AlertsConfig,
        sinks: Sinks,
        checks: Option<conditions::Checks>,
    ) -> Self {
        Self {
            active: Mutex::default(),
            repeat: chrono::Duration::minutes(config.repeat_interval_minutes.unwrap_or(60) as i64),
            sinks,
            checks,
            thresholds: Thresholds::from_config(config),
            evaluating: tokio::sync::Mutex::new(()),
            checked_at: Mutex::default(),
        }
    }

    /// How often the data conditions are checked when nothing runs.
    pub(crate) fn check_every(config: &AlertsConfig) -> Duration {
        Duration::from_secs(config.check_seconds.unwrap_or(60).max(1))
    }

    /// The alerts that hold, most severe first.
    pub(crate) fn active(&self) -> Vec<Alert> {
        let mut alerts: Vec<Alert> = self.lock().values().map(|a| a.alert.clone()).collect();
        alerts.sort_by(|a, b| {
            (b.severity == Severity::Critical)
                .cmp(&(a.severity == Severity::Critical))
                .then(a.key.cmp(&b.key))
        });
        alerts
    }

    /// When the data conditions were last evaluated in full; `None` before the first time, so
    /// that "no alerts" is not shown for "not looked yet".
    pub(crate) fn checked_at(&self) -> Option<DateTime<Utc>> {
        *self.checked_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A job's run failed after its last attempt.
    pub(crate) async fn job_failed(&self, job: &Job, run: &Run) {
        let mut alert = Alert::new(
            "job_failed",
            format!("job_failed:{}", job.name),
            Severity::Critical,
            format!(
                "job {} failed after {} attempt(s): {}",
                job.name,
                run.attempt,
                run.error.as_deref().unwrap_or("no error recorded")
            ),
        );
        alert.job = Some(job.name.clone());
        let group = alert.key.clone();
        self.observe(&group, vec![alert]).await;
    }

    /// A job's run succeeded: its failure alert, if any, resolves.
    pub(crate) async fn job_succeeded(&self, job: &Job) {
        self.observe(&format!("job_failed:{}", job.name), Vec::new())
            .await;
    }

    /// The stream's lag and progress, checked while it runs.
    pub(crate) async fn stream_checked(&self, job: &Job, status: &StreamStatus) {
        let alerts = conditions::stream(job, &status.snapshot(), &self.thresholds, Utc::now());
        self.observe(&format!("stream:{}", job.name), alerts).await;
    }

    /// Data changed (a run ended, or the periodic check): quality and occupancy re-checked.
    pub(crate) async fn data_changed(&self) {
        let Some(checks) = &self.checks else {
            return;
        };
        let started = Utc::now();
        let quality = self
            .evaluated("quality", checks.quality(&self.thresholds).await)
            .await;
        let occupancy = self
            .evaluated("bottleneck", checks.bottlenecks(&self.thresholds).await)
            .await;
        if quality && occupancy {
            *self.checked_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
        }
    }

    /// Observes one data condition's evaluation; whether it could be evaluated.
    async fn evaluated(&self, group: &str, firing: crate::error::Result<Vec<Alert>>) -> bool {
        match firing {
            Ok(alerts) => {
                self.observe(group, alerts).await;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, condition = group, "cannot check a data condition for alerts");
                false
            }
        }
    }

    /// The alerts of `group` (one evaluation: a job, the stream, quality, occupancy) that hold now: new ones fire, held ones repeat when
    /// due, changed ones fire anew, and the rest of the group resolves.
    async fn observe(&self, group: &str, firing: Vec<Alert>) {
        let _turn = self.evaluating.lock().await;
        let now = Utc::now();
        let mut notices = Vec::new();
        {
            let mut active = self.lock();
            let keys: Vec<String> = firing.iter().map(|a| a.key.clone()).collect();
            for mut alert in firing {
                match active.get_mut(&alert.key) {
                    Some(held) if held.alert.severity == alert.severity => {
                        alert.starts_at = held.alert.starts_at;
                        held.alert = alert;
                        if now - held.last_sent >= self.repeat {
                            held.last_sent = now;
                            notices.push((Notice::Repeat, held.alert.clone()));
                        }
                    }
                    _ => {
                        notices.push((Notice::Firing, alert.clone()));
                        active.insert(
                            alert.key.clone(),
                            Active {
                                group: group.to_string(),
                                alert,
                                last_sent: now,
                            },
                        );
                    }
                }
            }
            let cleared: Vec<String> = active
                .iter()
                .filter(|(k, held)| held.group == group && !keys.contains(k))
                .map(|(k, _)| k.clone())
                .collect();
            for key in cleared {
                if let Some(held) = active.remove(&key) {
                    let mut alert = held.alert;
                    alert.ends_at = Some(now);
                    notices.push((Notice::Resolved, alert));
                }
            }
        }
        self.sinks.send(&notices).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The alerts that hold according to `ops/alerts` (for a process that serves but does not
/// run the jobs): each key's latest notice, unless it resolved.
pub(crate) async fn active_in_table(root: &TableRoot) -> crate::error::Result<Vec<Alert>> {
    sinks::active_in_table(root).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::automation::jobs::{JobConfig, RunConfig, jobs};

    async fn notices(root: &TableRoot) -> Vec<String> {
        let mut rows: Vec<(i64, String)> = Vec::new();
        for b in root
            .read(
                patientflow_ingest::tables::ALERTS,
                &["recorded_at", "alert_key", "status", "severity"],
            )
            .await
            .unwrap()
        {
            use datafusion::arrow::array::AsArray;
            use datafusion::arrow::datatypes::TimestampMicrosecondType;
            let at = b.column(0).as_primitive::<TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                let text = |c: usize| b.column(c).as_string::<i32>().value(i).to_string();
                rows.push((at.value(i), format!("{} {} {}", text(1), text(2), text(3))));
            }
        }
        rows.sort();
        rows.into_iter().map(|(_, r)| r).collect()
    }

    fn bottleneck(severity: Severity) -> Alert {
        Alert::new(
            "bottleneck",
            "bottleneck:1:ICU".into(),
            severity,
            "hospital 1 ICU".into(),
        )
    }

    #[tokio::test]
    async fn an_alert_fires_once_repeats_when_due_changes_severity_and_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let config = AlertsConfig::default();
        let alerts = Alerts::new(&config, Sinks::new(root.clone(), &config).unwrap(), None);
        alerts
            .observe("bottleneck", vec![bottleneck(Severity::Warning)])
            .await;
        alerts
            .observe("bottleneck", vec![bottleneck(Severity::Warning)])
            .await;
        assert_eq!(
            notices(&root).await,
            ["bottleneck:1:ICU firing warning"],
            "once within the repeat interval"
        );
        alerts
            .observe("bottleneck", vec![bottleneck(Severity::Critical)])
            .await;
        // Another group's evaluation does not resolve it.
        alerts.observe("quality", Vec::new()).await;
        assert_eq!(alerts.active().len(), 1);
        alerts.observe("bottleneck", Vec::new()).await;
        assert_eq!(
            notices(&root).await,
            [
                "bottleneck:1:ICU firing warning",
                "bottleneck:1:ICU firing critical",
                "bottleneck:1:ICU resolved critical",
            ]
        );
        assert!(alerts.active().is_empty());

        let every_time = AlertsConfig {
            repeat_interval_minutes: Some(0),
            ..AlertsConfig::default()
        };
        let alerts = Alerts::new(
            &every_time,
            Sinks::new(root.clone(), &every_time).unwrap(),
            None,
        );
        alerts
            .observe("bottleneck", vec![bottleneck(Severity::Warning)])
            .await;
        alerts
            .observe("bottleneck", vec![bottleneck(Severity::Warning)])
            .await;
        assert_eq!(
            notices(&root).await[3..],
            [
                "bottleneck:1:ICU firing warning",
                "bottleneck:1:ICU repeat warning"
            ]
        );
    }

    #[test]
    fn a_stream_with_records_waiting_and_no_batch_is_stalled() {
        let config: JobConfig =
            toml::from_str("name = \"adt\"\nkind = \"stream\"\nfrom = \"landing\"").unwrap();
        let job = &jobs(&RunConfig::default(), &[config]).unwrap()[0];
        let t = Thresholds::from_config(&AlertsConfig {
            stream_max_lag: Some(50),
            ..AlertsConfig::default()
        });
        let now = Utc::now();
        let mut s = patientflow_ingest::stream::StreamSnapshot {
            last_batch_at: Some((now - chrono::Duration::seconds(400)).timestamp_micros()),
            ..Default::default()
        };
        assert!(
            conditions::stream(job, &s, &t, now).is_empty(),
            "idle, nothing waiting"
        );
        s.lag = vec![("p0".into(), 60)];
        let alerts = conditions::stream(job, &s, &t, now);
        let keys: Vec<&str> = alerts.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["stream_stalled:adt", "stream_lag:adt"]);
        s.last_batch_at = Some(now.timestamp_micros());
        let keys: Vec<String> = conditions::stream(job, &s, &t, now)
            .into_iter()
            .map(|a| a.key)
            .collect();
        assert_eq!(keys, ["stream_lag:adt"], "moving, but behind");
    }
}
