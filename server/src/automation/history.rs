//! The run history, `ops/pipeline_runs`: one row per state change of a run, so the table is
//! append-only and a run's state is its latest row. The scheduler keeps every run's latest
//! state in memory too, loaded at start; the REST API answers from it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use patientflow_ingest::TableRoot;
use patientflow_ingest::tables::{PIPELINE_RUNS, PIPELINE_RUNS_SCHEMA};
use serde::Serialize;

use super::schedule::Trigger;
use crate::error::{Error, Result};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Waiting: for the job's previous run to end, or for its next attempt (after a failed one).
    Queued,
    Running,
    Succeeded,
    /// Failed after its last attempt.
    Failed,
    /// An occurrence not run, by the job's overlap policy (recorded so that a restart does not
    /// catch it up).
    Skipped,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
            Status::Skipped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the run is over.
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Skipped)
    }
}

/// What a run moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Counts {
    /// Files read (landing, department or EHR files).
    pub(crate) files: u64,
    pub(crate) records_in: u64,
    pub(crate) silver_rows: u64,
    pub(crate) quarantined: u64,
    pub(crate) duplicates: u64,
}

/// One run of a job, as it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Run {
    pub(crate) run_id: String,
    pub(crate) job: String,
    pub(crate) kind: String,
    #[serde(serialize_with = "trigger_name")]
    pub(crate) trigger: Trigger,
    /// `job@scheduled time` for a schedule's occurrence (one run per occurrence, ever);
    /// `job@trigger:run id` otherwise.
    pub(crate) idempotency_key: String,
    pub(crate) scheduled_for: Option<DateTime<Utc>>,
    /// 1 for the first attempt; a retry, or a restart after the process died mid-run, adds one.
    pub(crate) attempt: u32,
    pub(crate) status: Status,
    pub(crate) queued_at: DateTime<Utc>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) ended_at: Option<DateTime<Utc>>,
    /// The last attempt's error.
    pub(crate) error: Option<String>,
    pub(crate) counts: Counts,
}

fn trigger_name<S: serde::Serializer>(t: &Trigger, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(t.as_str())
}

impl Run {
    /// A new run of `job`, queued now.
    pub(crate) fn queued(
        job: &str,
        kind: &str,
        trigger: Trigger,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Self {
        let run_id = uuid::Uuid::new_v4().to_string();
        let idempotency_key = match (trigger.is_scheduled(), scheduled_for) {
            (true, Some(t)) => occurrence_key(job, t),
            _ => format!("{job}@{}:{run_id}", trigger.as_str()),
        };
        Self {
            run_id,
            job: job.to_string(),
            kind: kind.to_string(),
            trigger,
            idempotency_key,
            scheduled_for,
            attempt: 1,
            status: Status::Queued,
            queued_at: Utc::now(),
            started_at: None,
            ended_at: None,
            error: None,
            counts: Counts::default(),
        }
    }
}

impl Run {
    /// Whether a caller following it should poll again: it waits, or runs toward an end (a
    /// stream's run has none: running is its steady state).
    pub(crate) fn pending(&self) -> bool {
        match self.status {
            Status::Queued => true,
            Status::Running => self.trigger != Trigger::Continuous,
            _ => false,
        }
    }
}

/// The idempotency key of a schedule's occurrence.
pub(crate) fn occurrence_key(job: &str, scheduled_for: DateTime<Utc>) -> String {
    format!(
        "{job}@{}",
        scheduled_for.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The runs of every job: in memory, and in `ops/pipeline_runs`.
#[derive(Debug)]
pub(crate) struct History {
    root: TableRoot,
    runs: Mutex<BTreeMap<String, Run>>,
}

impl History {
    /// The history under `root`, loaded from `ops/pipeline_runs`.
    pub(crate) async fn load(root: TableRoot) -> Result<Arc<Self>> {
        let columns: Vec<&str> = PIPELINE_RUNS_SCHEMA
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let batches = root.read(PIPELINE_RUNS, &columns).await?;
        let mut rows: Vec<(i64, Run)> = Vec::new();
        for b in &batches {
            rows.extend(decode(b)?);
        }
        // A run's state is its latest row.
        rows.sort_by_key(|(recorded, _)| *recorded);
        let runs = rows
            .into_iter()
            .map(|(_, run)| (run.run_id.clone(), run))
            .collect();
        Ok(Arc::new(Self {
            root,
            runs: Mutex::new(runs),
        }))
    }

    /// Records `run`'s new state: a row of `ops/pipeline_runs`, then in memory, so that what
    /// the API shows is durable.
    pub(crate) async fn record(&self, run: &Run) -> Result<()> {
        let batch = encode(run, Utc::now()).map_err(|e| Error::Jobs(format!("run row: {e}")))?;
        self.root.append(PIPELINE_RUNS, vec![batch]).await?;
        self.lock().insert(run.run_id.clone(), run.clone());
        Ok(())
    }

    /// A run by id.
    pub(crate) fn get(&self, run_id: &str) -> Option<Run> {
        self.lock().get(run_id).cloned()
    }

    /// The runs of `job` (every job with `None`), the most recently queued first.
    pub(crate) fn list(&self, job: Option<&str>, limit: usize) -> Vec<Run> {
        let mut runs: Vec<Run> = self
            .lock()
            .values()
            .filter(|r| job.is_none_or(|j| r.job == j))
            .cloned()
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.queued_at));
        runs.truncate(limit);
        runs
    }

    /// The newest occurrence of `job`'s schedule that a run was queued for.
    pub(crate) fn last_occurrence(&self, job: &str) -> Option<DateTime<Utc>> {
        self.lock()
            .values()
            .filter(|r| r.job == job && r.trigger.is_scheduled())
            .filter_map(|r| r.scheduled_for)
            .max()
    }

    /// The runs of `job` a previous process left unfinished (it stopped or died), oldest first.
    pub(crate) fn unfinished(&self, job: &str) -> Vec<Run> {
        let mut runs: Vec<Run> = self
            .lock()
            .values()
            .filter(|r| r.job == job && !r.status.is_final())
            .cloned()
            .collect();
        runs.sort_by_key(|r| r.queued_at);
        runs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_micros())
}

fn encode(run: &Run, recorded_at: DateTime<Utc>) -> datafusion::arrow::error::Result<RecordBatch> {
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    let time = |v: Option<i64>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone("UTC"))
    };
    let count = |v: u64| -> ArrayRef { Arc::new(Int64Array::from(vec![v as i64])) };
    let c = &run.counts;
    RecordBatch::try_new(
        PIPELINE_RUNS_SCHEMA.clone(),
        vec![
            text(&run.run_id),
            text(&run.job),
            text(&run.kind),
            text(run.trigger.as_str()),
            text(&run.idempotency_key),
            time(micros(run.scheduled_for)),
            Arc::new(Int32Array::from(vec![run.attempt as i32])),
            text(run.status.as_str()),
            time(Some(recorded_at.timestamp_micros())),
            time(Some(run.queued_at.timestamp_micros())),
            time(micros(run.started_at)),
            time(micros(run.ended_at)),
            Arc::new(StringArray::from(vec![run.error.as_deref()])),
            count(c.files),
            count(c.records_in),
            count(c.silver_rows),
            count(c.quarantined),
            count(c.duplicates),
        ],
    )
}

/// The rows of a batch of `ops/pipeline_runs`, each with its `recorded_at`.
fn decode(b: &RecordBatch) -> Result<Vec<(i64, Run)>> {
    let bad = |what: &str| Error::Jobs(format!("{PIPELINE_RUNS}: unexpected {what}"));
    let column = |name: &str| b.column_by_name(name).ok_or_else(|| bad(name));
    let text = |name: &str| -> Result<&StringArray> {
        column(name)?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| bad(name))
    };
    let time = |name: &str| -> Result<&TimestampMicrosecondArray> {
        column(name)?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| bad(name))
    };
    let int = |name: &str| -> Result<&Int64Array> {
        column(name)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| bad(name))
    };
    let (run_id, job, kind, trigger, key, status, error) = (
        text("run_id")?,
        text("job")?,
        text("kind")?,
        text("trigger")?,
        text("idempotency_key")?,
        text("status")?,
        text("error")?,
    );
    let (scheduled, recorded, queued, started, ended) = (
        time("scheduled_for")?,
        time("recorded_at")?,
        time("queued_at")?,
        time("started_at")?,
        time("ended_at")?,
    );
    let attempt = column("attempt")?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| bad("attempt"))?;
    let (files, records, silver, quarantined, duplicates) = (
        int("files")?,
        int("records_in")?,
        int("silver_rows")?,
        int("quarantined")?,
        int("duplicates")?,
    );
    let at = |a: &TimestampMicrosecondArray, i: usize| {
        a.is_valid(i)
            .then(|| DateTime::from_timestamp_micros(a.value(i)))
            .flatten()
    };
    (0..b.num_rows())
        .map(|i| {
            let run = Run {
                run_id: run_id.value(i).to_string(),
                job: job.value(i).to_string(),
                kind: kind.value(i).to_string(),
                trigger: Trigger::parse(trigger.value(i)).ok_or_else(|| bad("trigger"))?,
                idempotency_key: key.value(i).to_string(),
                scheduled_for: at(scheduled, i),
                attempt: attempt.value(i).max(1) as u32,
                status: Status::parse(status.value(i)).ok_or_else(|| bad("status"))?,
                queued_at: at(queued, i).ok_or_else(|| bad("queued_at"))?,
                started_at: at(started, i),
                ended_at: at(ended, i),
                error: error.is_valid(i).then(|| error.value(i).to_string()),
                counts: Counts {
                    files: files.value(i) as u64,
                    records_in: records.value(i) as u64,
                    silver_rows: silver.value(i) as u64,
                    quarantined: quarantined.value(i) as u64,
                    duplicates: duplicates.value(i) as u64,
                },
            };
            Ok((recorded.value(i), run))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_survives_its_row() {
        let mut run = Run::queued(
            "ehr-daily",
            "ehr",
            Trigger::Catchup,
            DateTime::from_timestamp(1_800_000_000, 0),
        );
        assert_eq!(run.idempotency_key, "ehr-daily@2027-01-15T08:00:00Z");
        run.status = Status::Failed;
        run.attempt = 3;
        run.error = Some("no such folder".into());
        run.counts.records_in = 7;
        let batch = encode(&run, Utc::now()).unwrap();
        let decoded = decode(&batch).unwrap();
        assert_eq!(decoded.len(), 1);
        let mut expected = run.clone();
        expected.queued_at =
            DateTime::from_timestamp_micros(run.queued_at.timestamp_micros()).unwrap();
        assert_eq!(decoded[0].1, expected);
        let api = Run::queued("gold", "gold", Trigger::Api, None);
        assert_eq!(api.idempotency_key, format!("gold@api:{}", api.run_id));
    }
}
