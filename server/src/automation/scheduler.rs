//! The scheduler of `patientflow run`: per job, one executor that runs its runs one after the
//! other (a job never overlaps itself), fed by its schedule, its folder (file trigger), the REST
//! API and, at start, the runs a previous process left unfinished and the catch-up of what it
//! missed. Streams are supervised instead: restarted with backoff when they stop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use patientflow_ingest::{StopHandle, StreamStatus};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::alerts::Alerts;
use super::execute::{self, Context};
use super::history::{Counts, History, Run, Status};
use super::jobs::{Job, JobKind, Overlap};
use super::schedule::{Trigger, due};
use super::watch::Watcher;
use crate::commands::follow::{self, StreamOptions};
use crate::config::Config;
use crate::error::{Error, Result};

/// A job's live state.
#[derive(Debug, Default)]
struct Slot {
    /// The run in progress.
    running: Option<String>,
    /// Runs queued, not started, by trigger.
    waiting: Vec<(String, Trigger)>,
    /// The next occurrence of its schedule.
    next: Option<DateTime<Utc>>,
}

/// One job with its queue.
#[derive(Debug)]
struct Entry {
    job: Job,
    queue: mpsc::UnboundedSender<Run>,
    slot: Mutex<Slot>,
}

impl Entry {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What `GET /api/v1/pipelines` shows of a job.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct JobView {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    /// Cron pattern and zone, if scheduled.
    pub(crate) schedule: Option<String>,
    pub(crate) timezone: Option<String>,
    pub(crate) triggers: String,
    pub(crate) next_fire_time: Option<DateTime<Utc>>,
    pub(crate) running: Option<String>,
    pub(crate) queued: usize,
    /// Its latest run that ended.
    pub(crate) last_run: Option<Run>,
}

/// The jobs of one process.
#[derive(Debug)]
pub(crate) struct Scheduler {
    entries: BTreeMap<String, Arc<Entry>>,
    history: Arc<History>,
    alerts: Arc<Alerts>,
    stop: watch::Sender<bool>,
    /// How late an occurrence may be and still count as on time.
    grace: chrono::Duration,
    /// The status of the stream job (the first, if several), for `/metrics` and alerts.
    stream: Option<Arc<StreamStatus>>,
}

/// Everything the tasks of a scheduler need.
struct Shared {
    ctx: Context,
    config: Arc<Config>,
    history: Arc<History>,
    alerts: Arc<Alerts>,
    poll: Duration,
}

impl Scheduler {
    /// Starts every job: resumes what a previous process left unfinished, catches up what it
    /// missed (each job's policy), then follows schedules, folders and streams until
    /// [`Scheduler::stop`]. The tasks go to `tasks`.
    pub(crate) async fn start(
        jobs: Vec<Job>,
        ctx: Context,
        config: Arc<Config>,
        alerts: Arc<Alerts>,
        tasks: &mut JoinSet<()>,
    ) -> Result<Arc<Self>> {
        let history = History::load(ctx.root.clone()).await?;
        let grace = chrono::Duration::seconds(config.run.grace_seconds.unwrap_or(300) as i64);
        let poll = Duration::from_millis(config.run.poll_ms.unwrap_or(2_000).max(10));
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            ctx,
            config,
            history: history.clone(),
            alerts: alerts.clone(),
            poll,
        });
        let mut entries = BTreeMap::new();
        let mut stream = None;
        let mut receivers = Vec::new();
        for job in jobs {
            let (tx, rx) = mpsc::unbounded_channel();
            let entry = Arc::new(Entry {
                job,
                queue: tx,
                slot: Mutex::default(),
            });
            if entry.job.kind == JobKind::Stream {
                let status = Arc::new(StreamStatus::default());
                stream.get_or_insert_with(|| status.clone());
                tasks.spawn(supervise(
                    entry.job.clone(),
                    shared.clone(),
                    status,
                    stop.subscribe(),
                ));
            } else {
                receivers.push((entry.clone(), rx));
            }
            entries.insert(entry.job.name.clone(), entry);
        }
        let scheduler = Arc::new(Self {
            entries,
            history,
            alerts,
            stop,
            grace,
            stream,
        });
        let now = Utc::now();
        for (entry, rx) in receivers {
            scheduler.resume(&entry, now).await?;
            tasks.spawn(execute_runs(
                entry.clone(),
                rx,
                shared.clone(),
                scheduler.stop.subscribe(),
            ));
            if entry.job.schedule.is_some() {
                tasks.spawn(tick(entry.clone(), scheduler.clone(), now));
            }
            if entry.job.on_file {
                tasks.spawn(watch_folder(entry.clone(), scheduler.clone(), shared.poll));
            }
        }
        Ok(scheduler)
    }

    /// Queues again the runs a previous process left unfinished, then the occurrences its
    /// downtime missed that the job's catch-up policy runs.
    async fn resume(&self, entry: &Entry, now: DateTime<Utc>) -> Result<()> {
        let job = &entry.job;
        for mut run in self.history.unfinished(&job.name) {
            if run.status == Status::Running {
                // It died mid-attempt: that attempt counts.
                run.attempt += 1;
            }
            run.status = Status::Queued;
            tracing::info!(job = %job.name, run = %run.run_id, key = %run.idempotency_key, attempt = run.attempt, "resuming a run the last process left unfinished");
            self.enqueue(entry, run).await?;
        }
        let Some(schedule) = &job.schedule else {
            return Ok(());
        };
        let last = self.history.last_occurrence(&job.name);
        for d in due(
            schedule,
            last,
            now,
            self.grace,
            job.catchup,
            job.max_catchup,
        ) {
            match d.trigger {
                // Through the overlap policy: occurrences due together run once.
                Some(trigger) => self.offer(entry, trigger, Some(d.scheduled_for)).await?,
                None => {
                    tracing::info!(job = %job.name, scheduled_for = %d.scheduled_for, policy = ?job.catchup, "missed while down; the catch-up policy skips it")
                }
            }
        }
        Ok(())
    }

    /// Records `run` as queued and hands it to its job's executor.
    async fn enqueue(&self, entry: &Entry, run: Run) -> Result<()> {
        self.history.record(&run).await?;
        entry.slot().waiting.push((run.run_id.clone(), run.trigger));
        entry
            .queue
            .send(run)
            .map_err(|_| Error::Jobs(format!("job `{}` has stopped", entry.job.name)))
    }

    /// A run of an occurrence or a file arrival, unless the job's overlap policy says no:
    /// with `skip`, none while a run is in progress; with `queue`, one waiting at most.
    async fn offer(
        &self,
        entry: &Entry,
        trigger: Trigger,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let job = &entry.job;
        let reason = {
            let slot = entry.slot();
            let same_waiting = slot
                .waiting
                .iter()
                .any(|(_, t)| t.is_scheduled() == trigger.is_scheduled());
            match job.overlap {
                Overlap::Skip if slot.running.is_some() || !slot.waiting.is_empty() => {
                    Some("the last run is still going (overlap = \"skip\")")
                }
                _ if same_waiting => Some("a run of it is queued already"),
                _ => None,
            }
        };
        let mut run = Run::queued(&job.name, job.kind.as_str(), trigger, scheduled_for);
        if let Some(reason) = reason {
            tracing::info!(job = %job.name, trigger = trigger.as_str(), ?scheduled_for, "not queued: {reason}");
            if trigger.is_scheduled() {
                // Recorded, so that the occurrence is never caught up after a restart.
                run.status = Status::Skipped;
                run.error = Some(format!("skipped: {reason}"));
                run.ended_at = Some(Utc::now());
                self.history.record(&run).await?;
            }
            return Ok(());
        }
        self.enqueue(entry, run).await
    }

    /// `POST /api/v1/pipelines/{job}/runs`: a run queued now.
    pub(crate) async fn submit(&self, job: &str) -> std::result::Result<Run, SubmitError> {
        let entry = self.entries.get(job).ok_or(SubmitError::UnknownJob)?;
        if entry.job.kind == JobKind::Stream {
            return Err(SubmitError::Stream);
        }
        let run = Run::queued(&entry.job.name, entry.job.kind.as_str(), Trigger::Api, None);
        self.enqueue(entry, run.clone())
            .await
            .map_err(|e| SubmitError::Internal(e.to_string()))?;
        Ok(run)
    }

    /// The run history.
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// The alerts.
    pub(crate) fn alerts(&self) -> &Arc<Alerts> {
        &self.alerts
    }

    /// The stream job's status, if the process runs one.
    pub(crate) fn stream_status(&self) -> Option<Arc<StreamStatus>> {
        self.stream.clone()
    }

    /// Whether `job` is a job of this process.
    pub(crate) fn has_job(&self, job: &str) -> bool {
        self.entries.contains_key(job)
    }

    /// Every job, with its next fire time and last outcome.
    pub(crate) fn jobs(&self) -> Vec<JobView> {
        self.entries
            .values()
            .map(|e| {
                let slot = e.slot();
                let last_run = self
                    .history
                    .list(Some(&e.job.name), usize::MAX)
                    .into_iter()
                    .find(|r| r.status.is_final() && r.status != Status::Skipped);
                JobView {
                    name: e.job.name.clone(),
                    kind: e.job.kind.as_str(),
                    schedule: e.job.schedule.as_ref().map(|s| s.pattern().to_string()),
                    timezone: e.job.schedule.as_ref().map(|s| s.tz().to_string()),
                    triggers: e.job.triggers(),
                    next_fire_time: slot.next,
                    running: slot.running.clone(),
                    queued: slot.waiting.len(),
                    last_run,
                }
            })
            .collect()
    }

    /// Turns `true` when the scheduler stops.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops taking runs: executors finish the attempt in hand, streams commit the batch in
    /// hand.
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Why a run cannot be submitted.
#[derive(Debug)]
pub(crate) enum SubmitError {
    UnknownJob,
    Stream,
    Internal(String),
}

/// Follows a job's schedule from `from`, offering each occurrence when it comes.
async fn tick(entry: Arc<Entry>, scheduler: Arc<Scheduler>, from: DateTime<Utc>) {
    let Some(schedule) = entry.job.schedule.clone() else {
        return;
    };
    let mut stop = scheduler.stop.subscribe();
    let mut last = from;
    while let Some(next) = schedule.next_after(last) {
        entry.slot().next = Some(next);
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
        if let Err(e) = scheduler.offer(&entry, Trigger::Schedule, Some(next)).await {
            tracing::error!(job = %entry.job.name, error = %e, "cannot queue a scheduled run");
        }
        last = next;
    }
}

/// Offers a run whenever a file arrives (or changes) in the job's folder.
async fn watch_folder(entry: Arc<Entry>, scheduler: Arc<Scheduler>, poll: Duration) {
    let Some(from) = entry.job.from.clone() else {
        return;
    };
    let mut watcher = Watcher::new(from.into());
    let mut stop = scheduler.stop.subscribe();
    loop {
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = stopped(&mut stop) => return,
        }
        let arrived = watcher.poll();
        if arrived.is_empty() {
            continue;
        }
        tracing::info!(job = %entry.job.name, files = ?arrived, "files arrived");
        if let Err(e) = scheduler.offer(&entry, Trigger::File, None).await {
            tracing::error!(job = %entry.job.name, error = %e, "cannot queue a file-triggered run");
        }
    }
}

/// Runs a job's runs one at a time, each with its retries and timeout.
async fn execute_runs(
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

/// How often a running stream's freshness is checked for alerts.
const STREAM_CHECK: Duration = Duration::from_secs(5);

/// Keeps a stream job running: restarted with backoff (doubling from its
/// `retry_backoff_seconds`, at most five minutes) whenever it stops with an error; each start
/// is a run in the history. After `retries` failures in a row, it alerts.
async fn supervise(
    job: Job,
    shared: Arc<Shared>,
    status: Arc<StreamStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let mut run = Run::queued(&job.name, job.kind.as_str(), Trigger::Continuous, None);
        run.status = Status::Running;
        run.started_at = Some(Utc::now());
        if let Err(e) = shared.history.record(&run).await {
            tracing::error!(job = %job.name, error = %e, "cannot record the stream's run");
        }
        let result = follow_once(&job, &shared, status.clone(), &mut stop).await;
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
                    shared.alerts.job_failed(&job, &run).await;
                }
                let delay = backoff(job.retry_backoff, failures).min(Duration::from_secs(300));
                tracing::error!(job = %job.name, error = %e, failures, restart_in_s = delay.as_secs_f64(), "the stream stopped; restarting");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
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
            () = tokio::time::sleep(STREAM_CHECK) => alerts.stream_checked(job, &status).await,
        }
    }
}

/// Completes when `stop` turns `true` (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
