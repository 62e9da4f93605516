//! The scheduler of `patientflow run`: per job, one executor that runs its runs one after the
//! other (a job never overlaps itself), fed by its schedule, its folder (file trigger), the REST
//! API and, at start, the runs a previous process left unfinished and the catch-up of what it
//! missed. Streams are supervised instead: restarted with backoff when they stop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use patientflow_ingest::StreamStatus;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::alerts::Alerts;
use super::execute::Context;
use super::history::{History, Run, Status};
use super::jobs::{Job, JobKind, Overlap};
use super::schedule::{Trigger, due};
use crate::config::Config;
use crate::error::{Error, Result};

mod runs;
mod stream;
#[cfg(test)]
mod tests;
mod triggers;

use runs::execute_runs;
use stream::supervise;
use triggers::{tick, watch_folder};

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
    /// Wakes a stream's supervisor waiting to restart it.
    wake: tokio::sync::Notify,
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
                wake: tokio::sync::Notify::new(),
            });
            if entry.job.kind == JobKind::Stream {
                let status = Arc::new(StreamStatus::default());
                stream.get_or_insert_with(|| status.clone());
                tasks.spawn(supervise(
                    entry.clone(),
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
                // Each one the policy catches up runs; on-time ones go through the overlap
                // policy, as when they come while the scheduler runs.
                Some(Trigger::Catchup) => {
                    let run = Run::queued(
                        &job.name,
                        job.kind.as_str(),
                        Trigger::Catchup,
                        Some(d.scheduled_for),
                    );
                    self.enqueue(entry, run).await?;
                }
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

    /// `POST /api/v1/pipelines/{job}/runs`: a run queued now; for a stream, its run when it
    /// runs, else a restart now (instead of at the end of its backoff).
    pub(crate) async fn submit(&self, job: &str) -> std::result::Result<Submitted, SubmitError> {
        let entry = self.entries.get(job).ok_or(SubmitError::UnknownJob)?;
        if entry.job.kind == JobKind::Stream {
            let running = entry.slot().running.clone();
            if let Some(run) = running.and_then(|id| self.history.get(&id)) {
                return Ok(Submitted::Running(run));
            }
            entry.wake.notify_one();
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let running = entry.slot().running.clone();
                if let Some(run) = running.and_then(|id| self.history.get(&id)) {
                    return Ok(Submitted::Queued(run));
                }
            }
            return Err(SubmitError::Internal(format!(
                "the stream job `{job}` did not restart within 5 s; see the server log"
            )));
        }
        let run = Run::queued(&entry.job.name, entry.job.kind.as_str(), Trigger::Api, None);
        self.enqueue(entry, run.clone())
            .await
            .map_err(|e| SubmitError::Internal(e.to_string()))?;
        Ok(Submitted::Queued(run))
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

/// What a submission did.
#[derive(Debug)]
pub(crate) enum Submitted {
    /// A new run (for a stream: restarted), to follow.
    Queued(Run),
    /// The stream job's run, running already.
    Running(Run),
}

/// Why a run cannot be submitted.
#[derive(Debug)]
pub(crate) enum SubmitError {
    UnknownJob,
    Internal(String),
}

/// Completes when `stop` turns `true` (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
