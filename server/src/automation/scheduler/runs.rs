//! A job's executor: its runs one at a time, each attempt recorded, retried with backoff and
//! jitter, cut off at the job's timeout.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use super::{Entry, Shared, stopped};
use crate::automation::execute;
use crate::automation::history::{Counts, Run, Status};
use crate::automation::jobs::{Job, JobKind};
use crate::error::Result;

/// Runs a job's runs one at a time, each with its retries and timeout.
pub(super) async fn execute_runs(
    entry: Arc<Entry>,
    mut queue: mpsc::UnboundedReceiver<Run>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let run = tokio::select! {
            run = queue.recv() => match run {
                Some(run) => run,
                None => return,
            },
            () = stopped(&mut stop) => return,
        };
        {
            let mut slot = entry.slot();
            slot.waiting.retain(|(id, _)| *id != run.run_id);
            slot.running = Some(run.run_id.clone());
        }
        let ended = execute_run(&entry.job, run, &shared, &mut stop).await;
        entry.slot().running = None;
        if let Err(e) = ended {
            tracing::error!(job = %entry.job.name, error = %e, "cannot record a run");
        }
    }
}

/// The attempts of one run, recorded as they go; `Ok` once the run is recorded as ended (or
/// left queued by a stop, for the next process).
async fn execute_run(
    job: &Job,
    mut run: Run,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let attempts = 1 + job.retries;
    let history = &shared.history;
    if run.attempt > attempts {
        run.status = Status::Failed;
        run.ended_at = Some(Utc::now());
        run.error = Some(format!(
            "interrupted {} time(s) (the process stopped mid-run); no attempts left",
            run.attempt - 1
        ));
        history.record(&run).await?;
        shared.alerts.job_failed(job, &run).await;
        return Ok(());
    }
    loop {
        run.status = Status::Running;
        run.started_at = Some(Utc::now());
        run.ended_at = None;
        history.record(&run).await?;
        tracing::info!(job = %job.name, run = %run.run_id, attempt = run.attempt, trigger = run.trigger.as_str(), "run started");
        let outcome = tokio::time::timeout(job.timeout, execute::attempt(job, &shared.ctx)).await;
        let error = match outcome {
            Ok(Ok(counts)) => {
                run.status = Status::Succeeded;
                run.ended_at = Some(Utc::now());
                run.error = None;
                run.counts = counts;
                history.record(&run).await?;
                tracing::info!(job = %job.name, run = %run.run_id, records = counts.records_in, "run succeeded");
                shared.alerts.job_succeeded(job).await;
                if job.kind != JobKind::Maintain {
                    shared.alerts.data_changed().await;
                }
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "timed out after {} s (the job's timeout_seconds)",
                job.timeout.as_secs()
            ),
        };
        run.error = Some(error.clone());
        run.counts = Counts::default();
        if run.attempt >= attempts {
            run.status = Status::Failed;
            run.ended_at = Some(Utc::now());
            history.record(&run).await?;
            tracing::error!(job = %job.name, run = %run.run_id, attempts = run.attempt, error = %error, "run failed after its last attempt");
            shared.alerts.job_failed(job, &run).await;
            return Ok(());
        }
        let delay = backoff(job.retry_backoff, run.attempt);
        tracing::warn!(job = %job.name, run = %run.run_id, attempt = run.attempt, error = %error, retry_in_s = delay.as_secs_f64(), "attempt failed; retrying");
        run.attempt += 1;
        run.status = Status::Queued;
        history.record(&run).await?;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            // Left queued: the next process resumes it.
            () = stopped(stop) => return Ok(()),
        }
    }
}

/// The delay before attempt `failed + 1`: `base` doubled per failed attempt, with "equal
/// jitter" (half fixed, half random) so that jobs failing together do not retry together.
pub(crate) fn backoff(base: Duration, failed: u32) -> Duration {
    let full = base.saturating_mul(1u32 << (failed.saturating_sub(1)).min(16));
    let random = uuid::Uuid::new_v4().as_u128() as f64 / u128::MAX as f64;
    full / 2 + full.mul_f64(0.5 * random)
}
