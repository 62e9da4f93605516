//! Where notices go: the log, `ops/alerts`, a Microsoft Teams Workflows webhook (an Adaptive
//! Card message) and a generic webhook with Alertmanager's v4 JSON. Webhook URLs are secrets:
//! never logged, and delivery errors are reported without them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, TimestampMicrosecondType};
use patientflow_ingest::TableRoot;
use patientflow_ingest::tables::{ALERTS, ALERTS_SCHEMA};
use serde_json::{Value, json};

use super::{Alert, AlertsConfig, Notice, Severity};
use crate::error::{Error, Result};

/// The environment variable with the Teams webhook URL.
pub(crate) const TEAMS_ENV: &str = "PATIENTFLOW_TEAMS_WEBHOOK_URL";
/// The environment variable with the Alertmanager-style webhook URL.
pub(crate) const WEBHOOK_ENV: &str = "PATIENTFLOW_ALERT_WEBHOOK_URL";

/// Deliveries a webhook gets before a notice is given up (logged).
const DELIVERY_ATTEMPTS: u32 = 3;

/// The sinks of one process.
#[derive(Clone)]
pub(crate) struct Sinks {
    root: TableRoot,
    client: reqwest::Client,
    teams: Option<String>,
    webhook: Option<String>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs are secrets.
        f.debug_struct("Sinks")
            .field("root", &self.root.url().as_str())
            .field("teams", &self.teams.is_some())
            .field("webhook", &self.webhook.is_some())
            .finish()
    }
}

impl Sinks {
    /// The log and `ops/alerts` under `root`, plus the webhooks the environment (first) or the
    /// config names.
    pub(crate) fn new(root: TableRoot, config: &AlertsConfig) -> Result<Self> {
        let pick = |env: &str, file: &Option<String>| {
            std::env::var(env)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| file.clone())
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Jobs(format!("alert webhooks: {e}")))?;
        let sinks = Self {
            root,
            client,
            teams: pick(TEAMS_ENV, &config.teams_url),
            webhook: pick(WEBHOOK_ENV, &config.webhook_url),
        };
        tracing::info!(
            teams = sinks.teams.is_some(),
            webhook = sinks.webhook.is_some(),
            "alerts go to the log and ops/alerts"
        );
        Ok(sinks)
    }

    /// Sends the notices everywhere: the log, one commit to `ops/alerts`, each webhook.
    pub(crate) async fn send(&self, notices: &[(Notice, Alert)]) {
        if notices.is_empty() {
            return;
        }
        for (notice, alert) in notices {
            match notice {
                Notice::Resolved => tracing::info!(
                    target: "patientflow::alerts",
                    key = %alert.key, condition = %alert.condition, "RESOLVED: {}", alert.summary
                ),
                _ => tracing::warn!(
                    target: "patientflow::alerts",
                    key = %alert.key, condition = %alert.condition, severity = alert.severity.as_str(),
                    notice = notice.as_str(), "ALERT: {}", alert.summary
                ),
            }
        }
        match rows(notices) {
            Ok(batch) => {
                if let Err(e) = self.root.append(ALERTS, vec![batch]).await {
                    tracing::error!(error = %e, notices = notices.len(), "cannot write ops/alerts");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode ops/alerts rows"),
        }
        for (notice, alert) in notices {
            if let Some(url) = &self.teams {
                self.deliver("teams", url, &teams_message(*notice, alert))
                    .await;
            }
            if let Some(url) = &self.webhook {
                self.deliver("webhook", url, &alertmanager_message(*notice, alert))
                    .await;
            }
        }
    }

    async fn deliver(&self, sink: &str, url: &str, body: &Value) {
        for attempt in 1..=DELIVERY_ATTEMPTS {
            let error = match self.client.post(url).json(body).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => format!("answered {}", r.status()),
                Err(e) => e.without_url().to_string(),
            };
            tracing::warn!(sink, attempt, error = %error, "alert delivery failed");
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        tracing::error!(
            sink,
            "alert not delivered after {DELIVERY_ATTEMPTS} attempts; it is in the log and ops/alerts"
        );
    }
}

/// Alertmanager's labels of an alert.
fn labels(alert: &Alert) -> BTreeMap<&'static str, String> {
    let mut labels = BTreeMap::from([
        ("alertname", alert.condition.clone()),
        ("severity", alert.severity.as_str().to_string()),
        ("alert_key", alert.key.clone()),
        ("service", "patientflow".to_string()),
    ]);
    if let Some(job) = &alert.job {
        labels.insert("job", job.clone());
    }
    if let Some(h) = alert.hospital_id {
        labels.insert("hospital", h.to_string());
    }
    if let Some(d) = &alert.department {
        labels.insert("department", d.clone());
    }
    labels
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Alertmanager's webhook payload (version 4), one alert per message.
pub(crate) fn alertmanager_message(notice: Notice, alert: &Alert) -> Value {
    let status = if notice == Notice::Resolved {
        "resolved"
    } else {
        "firing"
    };
    let labels = labels(alert);
    let mut annotations = BTreeMap::from([("summary", alert.summary.clone())]);
    if let Some(v) = alert.value {
        annotations.insert("value", v.to_string());
    }
    if let Some(t) = alert.threshold {
        annotations.insert("threshold", t.to_string());
    }
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alert_key=\"{}\"}}", alert.key),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "patientflow",
        "groupLabels": {"alert_key": alert.key},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(alert.starts_at),
            // Alertmanager's zero time for an alert still firing.
            "endsAt": alert.ends_at.map_or("0001-01-01T00:00:00Z".to_string(), rfc3339),
            "generatorURL": "",
            "fingerprint": alert.fingerprint,
        }],
    })
}

/// A Teams Workflows message carrying one Adaptive Card.
pub(crate) fn teams_message(notice: Notice, alert: &Alert) -> Value {
    let (title, color) = match (notice, alert.severity) {
        (Notice::Resolved, _) => ("Resolved", "Good"),
        (_, Severity::Critical) => ("Alert (red)", "Attention"),
        (_, Severity::Warning) => ("Alert (amber)", "Warning"),
    };
    let mut facts = vec![
        json!({"title": "Condition", "value": alert.condition}),
        json!({"title": "Since", "value": rfc3339(alert.starts_at)}),
    ];
    if let Some(job) = &alert.job {
        facts.push(json!({"title": "Job", "value": job}));
    }
    if let Some(h) = alert.hospital_id {
        facts.push(json!({"title": "Hospital", "value": h.to_string()}));
    }
    if let Some(d) = &alert.department {
        facts.push(json!({"title": "Department", "value": d}));
    }
    if let Some(t) = alert.ends_at {
        facts.push(json!({"title": "Resolved at", "value": rfc3339(t)}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "color": color,
                     "text": format!("patientflow — {title}: {}", alert.condition), "wrap": true},
                    {"type": "TextBlock", "text": alert.summary, "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    })
}

fn rows(notices: &[(Notice, Alert)]) -> datafusion::arrow::error::Result<RecordBatch> {
    let text = |f: &dyn Fn(&Notice, &Alert) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            notices.iter().map(|(n, a)| f(n, a)),
        ))
    };
    let optional = |f: &dyn Fn(&Alert) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(notices.iter().map(|(_, a)| f(a))))
    };
    let number = |f: &dyn Fn(&Alert) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(notices.iter().map(|(_, a)| f(a))))
    };
    let time = |f: &dyn Fn(&Alert) -> Option<DateTime<Utc>>| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                notices
                    .iter()
                    .map(|(_, a)| f(a).map(|t| t.timestamp_micros())),
            )
            .with_timezone("UTC"),
        )
    };
    let now = Utc::now();
    RecordBatch::try_new(
        ALERTS_SCHEMA.clone(),
        vec![
            time(&|_| Some(now)),
            text(&|_, a| a.fingerprint.clone()),
            text(&|_, a| a.key.clone()),
            text(&|_, a| a.condition.clone()),
            text(&|_, a| a.severity.as_str().to_string()),
            text(&|n, _| n.as_str().to_string()),
            optional(&|a| a.job.clone()),
            Arc::new(Int32Array::from_iter(
                notices.iter().map(|(_, a)| a.hospital_id),
            )),
            optional(&|a| a.department.clone()),
            text(&|_, a| a.summary.clone()),
            number(&|a| a.value),
            number(&|a| a.threshold),
            time(&|a| Some(a.starts_at)),
            time(&|a| a.ends_at),
        ],
    )
}

/// Each key's latest notice in `ops/alerts`, unless it resolved.
pub(super) async fn active_in_table(root: &TableRoot) -> Result<Vec<Alert>> {
    let columns: Vec<&str> = ALERTS_SCHEMA
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut latest: BTreeMap<String, (i64, String, Alert)> = BTreeMap::new();
    for b in root.read(ALERTS, &columns).await? {
        let text = |i: usize| b.column(i).as_string::<i32>();
        let time = |i: usize| b.column(i).as_primitive::<TimestampMicrosecondType>();
        let (recorded, starts) = (time(0), time(12));
        let (hospital, value, threshold) = (
            b.column(7).as_primitive::<Int32Type>(),
            b.column(10).as_primitive::<Float64Type>(),
            b.column(11).as_primitive::<Float64Type>(),
        );
        let optional = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        for i in 0..b.num_rows() {
            let at = recorded.value(i);
            if latest
                .get(text(2).value(i))
                .is_some_and(|(t, _, _)| *t > at)
            {
                continue;
            }
            let severity = if text(4).value(i) == "critical" {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let mut alert = Alert::new(
                text(3).value(i),
                text(2).value(i).to_string(),
                severity,
                text(9).value(i).to_string(),
            );
            alert.job = optional(text(6), i);
            alert.hospital_id = hospital.is_valid(i).then(|| hospital.value(i));
            alert.department = optional(text(8), i);
            alert.value = value.is_valid(i).then(|| value.value(i));
            alert.threshold = threshold.is_valid(i).then(|| threshold.value(i));
            alert.starts_at = DateTime::from_timestamp_micros(starts.value(i)).unwrap_or_default();
            latest.insert(alert.key.clone(), (at, text(5).value(i).to_string(), alert));
        }
    }
    Ok(latest
        .into_values()
        .filter(|(_, status, _)| status != "resolved")
        .map(|(_, _, a)| a)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_their_fields() {
        let mut a = Alert::new(
            "bottleneck",
            "bottleneck:1:ICU".into(),
            Severity::Critical,
            "hospital 1 ICU is at 95% occupancy".into(),
        );
        a.hospital_id = Some(1);
        a.department = Some("ICU".into());
        let am = alertmanager_message(Notice::Firing, &a);
        assert_eq!(am["version"], "4");
        assert_eq!(am["status"], "firing");
        assert_eq!(am["alerts"][0]["labels"]["alertname"], "bottleneck");
        assert_eq!(am["alerts"][0]["labels"]["department"], "ICU");
        assert_eq!(am["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(am["alerts"][0]["fingerprint"], a.fingerprint.as_str());
        a.ends_at = Some(Utc::now());
        let resolved = alertmanager_message(Notice::Resolved, &a);
        assert_eq!(resolved["alerts"][0]["status"], "resolved");
        let teams = teams_message(Notice::Firing, &a);
        assert_eq!(teams["type"], "message");
        let card = &teams["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
    }
}
