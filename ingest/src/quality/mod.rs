//! Data-quality counts: written per run to `ops/quality_runs`, read back as a report.
//!
//! Each refined bronze batch adds one row per metric — `records_in`, `silver_rows`,
//! `quarantined`, `duplicates` (kind `total`) and one per rule (kind `rule`) — tagged with the
//! run that refined it. The report sums the latest run and all runs, and adds the open stays
//! of the latest gold refresh (contract §5.1).

mod open_stays;

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::datafusion::prelude::lit;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::silver::{Counts, RULES};
use crate::storage::{TableRoot, scan};
use crate::tables::{QUALITY_RUNS, QUALITY_SCHEMA};

pub use open_stays::OpenStays;

/// The dataset name recorded for the event stream.
pub const EVENTS_DATASET: &str = "patient_events";

/// Identifies one ingest run in `ops/quality_runs`.
#[derive(Debug, Clone)]
pub struct QualityRun {
    /// Unique id of the run.
    pub run_id: String,
    /// Start of the run, UTC microseconds.
    pub started_at: i64,
}

impl QualityRun {
    /// A new run starting now.
    pub fn start() -> Self {
        Self {
            run_id: uuid::Uuid::new_v4().to_string(),
            started_at: chrono::Utc::now().timestamp_micros(),
        }
    }

    /// The rows recording `counts` of `dataset` for its bronze batch `seq`; `rules` names
    /// the rules of `counts.rules` in order.
    pub(crate) fn batch<'a>(
        &self,
        dataset: &str,
        seq: i64,
        counts: &Counts,
        rules: impl Iterator<Item = &'a str>,
    ) -> Result<RecordBatch> {
        let mut metrics: Vec<(&str, &str, u64)> = vec![
            ("total", "records_in", counts.records_in),
            ("total", "silver_rows", counts.silver_rows),
            ("total", "quarantined", counts.quarantined),
            ("total", "duplicates", counts.duplicates),
        ];
        for (rule, n) in rules.zip(&counts.rules) {
            metrics.push(("rule", rule, *n));
        }
        let n = metrics.len();
        let now = chrono::Utc::now().timestamp_micros();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![self.run_id.as_str(); n])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![self.started_at; n]).with_timezone("UTC"),
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![dataset; n])),
            Arc::new(Int64Array::from(vec![seq; n])),
            Arc::new(metrics.iter().map(|m| Some(m.0)).collect::<StringArray>()),
            Arc::new(metrics.iter().map(|m| Some(m.1)).collect::<StringArray>()),
            Arc::new(
                metrics
                    .iter()
                    .map(|m| Some(m.2 as i64))
                    .collect::<Int64Array>(),
            ),
        ];
        RecordBatch::try_new(QUALITY_SCHEMA.clone(), columns)
            .map_err(|e| Error::arrow(QUALITY_RUNS, e))
    }
}

/// Counts in a report, with rules by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportCounts {
    /// Records read.
    pub records_in: u64,
    /// Records in silver.
    pub silver_rows: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Records dropped as duplicates.
    pub duplicates: u64,
    /// Matches per rule (every rule listed, zero included).
    pub rules: BTreeMap<String, u64>,
}

impl ReportCounts {
    /// Zero counts with every event rule listed.
    fn with_event_rules() -> Self {
        Self {
            rules: RULES.iter().map(|r| (r.name.to_string(), 0)).collect(),
            ..Self::default()
        }
    }

    fn add(&mut self, kind: &str, metric: &str, value: u64) {
        match (kind, metric) {
            ("total", "records_in") => self.records_in += value,
            ("total", "silver_rows") => self.silver_rows += value,
            ("total", "quarantined") => self.quarantined += value,
            ("total", "duplicates") => self.duplicates += value,
            ("rule", name) => *self.rules.entry(name.to_string()).or_default() += value,
            _ => {}
        }
    }

    /// Whether `records_in = silver_rows + quarantined + duplicates`.
    pub fn balanced(&self) -> bool {
        self.records_in == self.silver_rows + self.quarantined + self.duplicates
    }
}

impl From<&Counts> for ReportCounts {
    fn from(c: &Counts) -> Self {
        let mut out = Self::with_event_rules();
        out.records_in = c.records_in;
        out.silver_rows = c.silver_rows;
        out.quarantined = c.quarantined;
        out.duplicates = c.duplicates;
        for (rule, n) in RULES.iter().zip(&c.rules) {
            out.rules.insert(rule.name.to_string(), *n);
        }
        out
    }
}

/// The quality report: the latest run and the totals over all runs.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// Id of the latest run that refined anything, if any.
    pub latest_run_id: Option<String>,
    /// When that run started (RFC 3339).
    pub latest_run_started_at: Option<String>,
    /// Counts of the latest run.
    pub latest: ReportCounts,
    /// Counts of the event stream over all runs (top-level keys of the JSON report).
    #[serde(flatten)]
    pub totals: ReportCounts,
    /// Runs recorded.
    pub runs: u64,
    /// Totals of every dataset: the event stream and the daily batches (departments, EHR).
    pub datasets: BTreeMap<String, ReportCounts>,
    /// The as-of time of the latest gold refresh (RFC 3339), which `open_stays` are as of.
    pub gold_as_of: Option<String>,
    /// Open, long-open and stale stays per hospital and department (contract §5.1): findings
    /// about the source, not rejected records.
    pub open_stays: Vec<OpenStays>,
}

impl QualityReport {
    /// Reads the report from `ops/quality_runs` under `root`.
    pub async fn load(root: &TableRoot) -> Result<Self> {
        let table = root.open(QUALITY_RUNS).await?;
        let batches = scan(
            &table,
            QUALITY_RUNS,
            &[
                "run_id",
                "run_started_at",
                "kind",
                "metric",
                "value",
                "dataset",
            ],
            lit(true),
            &[],
        )
        .await?;
        let mut per_run: BTreeMap<(i64, String), ReportCounts> = BTreeMap::new();
        let mut totals = ReportCounts::with_event_rules();
        let mut datasets: BTreeMap<String, ReportCounts> = BTreeMap::new();
        for b in &batches {
            let text = |i: usize| b.column(i).as_any().downcast_ref::<StringArray>();
            let (Some(run), Some(kind), Some(metric)) = (text(0), text(2), text(3)) else {
                return Err(Error::arrow(
                    QUALITY_RUNS,
                    std::io::Error::other("unexpected column types"),
                ));
            };
            let started = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>();
            let value = b.column(4).as_any().downcast_ref::<Int64Array>();
            let dataset = b.column(5).as_any().downcast_ref::<StringArray>();
            let (Some(started), Some(value), Some(dataset)) = (started, value, dataset) else {
                return Err(Error::arrow(
                    QUALITY_RUNS,
                    std::io::Error::other("unexpected column types"),
                ));
            };
            for i in 0..b.num_rows() {
                let v = value.value(i).max(0) as u64;
                datasets
                    .entry(dataset.value(i).to_string())
                    .or_default()
                    .add(kind.value(i), metric.value(i), v);
                if dataset.value(i) != EVENTS_DATASET {
                    continue;
                }
                totals.add(kind.value(i), metric.value(i), v);
                per_run
                    .entry((started.value(i), run.value(i).to_string()))
                    .or_insert_with(ReportCounts::with_event_rules)
                    .add(kind.value(i), metric.value(i), v);
            }
        }
        let runs = per_run.len() as u64;
        let latest = per_run.into_iter().next_back();
        let (gold_as_of, open_stays) = open_stays::load(root).await?;
        Ok(Self {
            latest_run_id: latest.as_ref().map(|((_, id), _)| id.clone()),
            latest_run_started_at: latest.as_ref().and_then(|((t, _), _)| {
                chrono::DateTime::from_timestamp_micros(*t).map(|d| d.to_rfc3339())
            }),
            latest: latest
                .map(|(_, c)| c)
                .unwrap_or_else(ReportCounts::with_event_rules),
            totals,
            runs,
            datasets,
            gold_as_of: gold_as_of.and_then(rfc3339),
            open_stays,
        })
    }

    /// The report as a Markdown document.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# patientflow data-quality report\n\n");
        out.push_str(&format!(
            "Runs recorded: {}. Latest run: {} (started {}).\n\n",
            self.runs,
            self.latest_run_id.as_deref().unwrap_or("none"),
            self.latest_run_started_at.as_deref().unwrap_or("-"),
        ));
        out.push_str("| metric | latest run | all runs |\n| --- | ---: | ---: |\n");
        for (name, l, t) in self.rows() {
            out.push_str(&format!("| {name} | {l} | {t} |\n"));
        }
        out.push_str(&format!(
            "\n`records_in = silver_rows + quarantined + duplicates`: {}\n",
            if self.latest.balanced() && self.totals.balanced() {
                "holds"
            } else {
                "VIOLATED"
            }
        ));
        out.push_str("\n## Datasets (all runs)\n\n| dataset | records_in | silver_rows | quarantined | duplicates |\n| --- | ---: | ---: | ---: | ---: |\n");
        for (name, c) in &self.datasets {
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} |\n",
                c.records_in, c.silver_rows, c.quarantined, c.duplicates
            ));
        }
        out.push_str(&format!(
            "\n## Open stays (as of the gold refresh at {})\n\nLong-open: quiet for longer than the department's `warn_after`, still counted. Stale: quiet for its `stale_after`, in no census. Findings about the source, not rejected records.\n\n| hospital | department | open | long-open | stale | oldest last event |\n| ---: | --- | ---: | ---: | ---: | --- |\n",
            self.gold_as_of.as_deref().unwrap_or("-")
        ));
        for o in &self.open_stays {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                o.hospital_id,
                o.department,
                o.open,
                o.long_open,
                o.stale,
                o.oldest_last_event.as_deref().unwrap_or("-")
            ));
        }
        out
    }

    /// The report as a standalone HTML page.
    pub fn to_html(&self) -> String {
        let mut rows = String::new();
        for (name, l, t) in self.rows() {
            rows.push_str(&format!(
                "<tr><td>{}</td><td class=n>{l}</td><td class=n>{t}</td></tr>\n",
                html_escape(&name)
            ));
        }
        let mut open = String::new();
        for o in &self.open_stays {
            open.push_str(&format!(
                "<tr><td class=n>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>\n",
                o.hospital_id,
                html_escape(&o.department),
                o.open,
                o.long_open,
                o.stale,
                html_escape(o.oldest_last_event.as_deref().unwrap_or("-"))
            ));
        }
        format!(
            "<!doctype html><html><head><meta charset=utf-8><title>patientflow data quality</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:.3rem .6rem}}.n{{text-align:right}}</style></head>\
             <body><h1>Data-quality report</h1><p>Runs recorded: {}. Latest run: {}.</p>\
             <table><tr><th>metric</th><th>latest run</th><th>all runs</th></tr>\n{rows}</table>\
             <p>records_in = silver_rows + quarantined + duplicates: <b>{}</b></p>\
             <h2>Open stays (as of the gold refresh at {})</h2><p>Long-open: quiet for longer than \
             the department's warn_after, still counted. Stale: quiet for its stale_after, in no census.</p>\
             <table><tr><th>hospital</th><th>department</th><th>open</th><th>long-open</th><th>stale</th>\
             <th>oldest last event</th></tr>\n{open}</table></body></html>\n",
            self.runs,
            html_escape(self.latest_run_id.as_deref().unwrap_or("none")),
            if self.latest.balanced() && self.totals.balanced() {
                "holds"
            } else {
                "VIOLATED"
            },
            html_escape(self.gold_as_of.as_deref().unwrap_or("-")),
        )
    }

    fn rows(&self) -> Vec<(String, u64, u64)> {
        let mut rows = vec![
            (
                "records_in".to_string(),
                self.latest.records_in,
                self.totals.records_in,
            ),
            (
                "silver_rows".to_string(),
                self.latest.silver_rows,
                self.totals.silver_rows,
            ),
            (
                "quarantined".to_string(),
                self.latest.quarantined,
                self.totals.quarantined,
            ),
            (
                "duplicates".to_string(),
                self.latest.duplicates,
                self.totals.duplicates,
            ),
        ];
        for (name, t) in &self.totals.rules {
            let l = self.latest.rules.get(name).copied().unwrap_or(0);
            rows.push((format!("rule {name}"), l, *t));
        }
        rows
    }
}

fn rfc3339(t: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(t).map(|d| d.to_rfc3339())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
