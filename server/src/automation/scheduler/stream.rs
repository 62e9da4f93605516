//! A stream job, supervised: restarted with backoff whenever it stops, each start a run.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use patientflow_ingest::{StopHandle, StreamStatus};
use tokio::sync::watch;

use super::runs::backoff;
use super::{Entry, Shared, stopped};
use crate::automation::history::{Run, Status};
use crate::automation::jobs::Job;
use crate::automation::schedule::Trigger;
use crate::commands::follow::{self, StreamOptions};
use crate::error::{Error, Result};

/// How often a running stream's freshness is checked for alerts.
const STREAM_CHECK: Duration = Duration::from_secs(5);

/// At most this often, quality and occupancy are checked after new batches.
const DATA_CHECK: Duration = Duration::from_secs(30);

/// Keeps a stream job running: restarted with backoff (doubling from its
/// `retry_backoff_seconds`, at most five minutes) whenever it stops with an error; each start
/// is a run in the history. After `retries` failures in a row, it alerts.
pub(super) async fn supervise(
    entry: Arc<Entry>,
    shared: Arc<Shared>,
    status: Arc<StreamStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let job = &entry.job;
    let mut failures = 0u32;
    loop {
        let mut run = Run::queued(&job.name, job.kind.as_str(), Trigger::Continuous, None);
        run.status = Status::Running;
        run.started_at = Some(Utc::now());
        entry.slot().running = Some(run.run_id.clone());
        if let Err(e) = shared.history.record(&run).await {
            tracing::error!(job = %job.name, error = %e, "cannot record the stream's run");
        }
        let result = follow_once(job, &shared, status.clone(), &mut stop).await;
        entry.slot().running = None;
        run.ended_at = Some(Utc::now());
        let snapshot = status.snapshot();
        run.counts.records_in = snapshot.records;
        run.counts.quarantined = snapshot.quarantined;
        run.counts.duplicates = snapshot.duplicates;
        match result {
            Ok(()) => {
                run.status = Status::Succeeded;
                let _ = shared.history.record(&run).await;
                tracing::info!(job = %job.name, "stream stopped");
                return;
            }
            Err(e) => {
                failures += 1;
                run.status = Status::Failed;
                run.error = Some(e.to_string());
                let _ = shared.history.record(&run).await;
                if failures > job.retries {
                    shared.alerts.job_failed(job, &run).await;
                }
                let delay = backoff(job.retry_backoff, failures).min(Duration::from_secs(300));
                tracing::error!(job = %job.name, error = %e, failures, restart_in_s = delay.as_secs_f64(), "the stream stopped; restarting");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    // `POST /api/v1/pipelines/{job}/runs`: restart now.
                    () = entry.wake.notified() => {}
                    () = stopped(&mut stop) => return,
                }
            }
        }
    }
}

/// Follows the stream job's source until stopped (`Ok`) or until it fails.
async fn follow_once(
    job: &Job,
    shared: &Shared,
    status: Arc<StreamStatus>,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let from = job.from.as_deref().unwrap_or_default();
    let options = StreamOptions {
        gold: Some(shared.ctx.gold.clone()),
        source_timezone: shared.ctx.source_timezone,
        ..StreamOptions::default()
    };
    let (stream, source) = follow::open(from, &shared.ctx.root, options, &shared.config)?;
    let stream = stream.with_status(status.clone());
    let handle: StopHandle = stream.stop_handle();
    let alerts = shared.alerts.clone();
    let mut batches = tokio::spawn(stream.run(source));
    // The first batch is checked at once (a stream's start is when alerts are least known),
    // later ones at most every DATA_CHECK.
    let (mut checked_batches, mut checked_at) = (0, None::<std::time::Instant>);
    loop {
        tokio::select! {
            ended = &mut batches => {
                let metrics = ended.map_err(|e| Error::Jobs(format!("the stream task: {e}")))??;
                return Err(Error::Jobs(format!(
                    "the stream ended by itself after {} records; a stream job runs until stopped",
                    metrics.counts.records_in
                )));
            }
            () = stopped(stop) => {
                handle.stop();
                let ended = (&mut batches).await;
                ended.map_err(|e| Error::Jobs(format!("the stream task: {e}")))??;
                return Ok(());
            }
            () = tokio::time::sleep(STREAM_CHECK) => {
                alerts.stream_checked(job, &status).await;
                let batches = status.snapshot().batches;
                if batches != checked_batches
                    && checked_at.is_none_or(|t| t.elapsed() >= DATA_CHECK)
                {
                    alerts.data_changed().await;
                    (checked_batches, checked_at) = (batches, Some(std::time::Instant::now()));
                }
            }
        }
    }
}
