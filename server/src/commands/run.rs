//! `patientflow run`: the jobs of the config, scheduled, retried and recorded, with alerts;
//! `--serve` adds the query service. `--check` validates the jobs and prints when each
//! schedule fires next, in its own zone and in UTC.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use patientflow_ingest::TableRoot;
use patientflow_sql::Engine;
use tokio::task::JoinSet;

use super::{gold, ingest, maintain, serve};
use crate::app::stop_signal;
use crate::automation::alerts::{Checks, Sinks};
use crate::automation::{self, Alerts, Context, Job, JobKind, Scheduler};
use crate::cli::{GoldArgs, RunArgs};
use crate::config::Config;
use crate::error::{Error, Result};

/// How long running attempts get to finish after a stop signal; what is still running then is
/// resumed by the next start.
const DRAIN: Duration = Duration::from_secs(30);

pub(crate) async fn run(args: RunArgs, config: &Config) -> Result<()> {
    let jobs = automation::jobs(&config.run, &config.jobs)?;
    if jobs.is_empty() {
        return Err(Error::Jobs(
            "the config declares no `[[jobs]]`; deploy/patientflow.toml is a complete example"
                .into(),
        ));
    }
    if args.check {
        let after = args.after.unwrap_or_else(Utc::now);
        let grace = chrono::Duration::seconds(config.run.grace_seconds.unwrap_or(300) as i64);
        print!(
            "{}",
            report(&jobs, after, args.count, args.down_since, grace)
        );
        return Ok(());
    }
    let root = config.table_root(args.data.as_deref())?;
    let engine = Arc::new(Engine::new(
        root.clone(),
        serve::model(&args.service, config)?,
        serve::engine_config(&args.service, config),
    )?);
    let (scheduler, mut tasks) = start(jobs, root.clone(), engine, config).await?;
    for job in scheduler.jobs() {
        let next = job
            .next_fire_time
            .map_or(String::new(), |t| format!(", next {}", t.to_rfc3339()));
        println!("job {} ({}): {}{next}", job.name, job.kind, job.triggers);
    }
    let served = if args.serve {
        let mut settings = serve::settings(root, &args.service, config)?;
        settings.stream = scheduler.stream_status();
        settings.scheduler = Some(scheduler.clone());
        serve::serve(settings, None).await
    } else {
        tracing::info!("running the jobs; Ctrl-C to stop");
        stop_signal().await;
        Ok(())
    };
    stop(&scheduler, &mut tasks).await;
    served
}

/// Starts the scheduler of `jobs` with alerts (data conditions checked through `engine`) and
/// the periodic check.
pub(crate) async fn start(
    jobs: Vec<Job>,
    root: TableRoot,
    engine: Arc<Engine>,
    config: &Config,
) -> Result<(Arc<Scheduler>, JoinSet<()>)> {
    let ctx = Context {
        gold: gold::refresh_for(root.clone(), &GoldArgs::default(), config)?,
        maintenance: maintain::maintenance_for(root.clone(), None, None, config)?,
        source_timezone: ingest::source_timezone(None, config)?,
        batch_records: config.ingest.batch_records,
        root: root.clone(),
    };
    let sinks = Sinks::new(root.clone(), &config.alerts)?;
    let alerts = Arc::new(Alerts::new(
        &config.alerts,
        sinks,
        Some(Checks::new(root, engine)),
    ));
    let mut tasks = JoinSet::new();
    let scheduler = Scheduler::start(
        jobs,
        ctx,
        Arc::new(config.clone()),
        alerts.clone(),
        &mut tasks,
    )
    .await?;
    let every = Alerts::check_every(&config.alerts);
    let mut stopping = scheduler.stopping();
    tasks.spawn(async move {
        loop {
            alerts.data_changed().await;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = crate::automation::stopped(&mut stopping) => return,
            }
        }
    });
    Ok((scheduler, tasks))
}

/// Stops the jobs: attempts in hand get [`DRAIN`] to finish.
pub(crate) async fn stop(scheduler: &Scheduler, tasks: &mut JoinSet<()>) {
    scheduler.stop();
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("runs still going after {DRAIN:?}; the next start resumes them");
    }
    tasks.abort_all();
}

/// What `run --check` prints.
fn report(
    jobs: &[Job],
    after: DateTime<Utc>,
    count: usize,
    down_since: Option<DateTime<Utc>>,
    grace: chrono::Duration,
) -> String {
    let mut out = format!("config OK: {} job(s)\n", jobs.len());
    for job in jobs {
        let _ = write!(out, "\n{} ({})", job.name, job.kind.as_str());
        if let Some(from) = &job.from {
            let _ = write!(out, " from {from}");
        }
        let _ = writeln!(out, "\n  triggers: {}", job.triggers());
        if job.kind != JobKind::Stream {
            let _ = writeln!(
                out,
                "  retries {} (first after {} s, doubling, with jitter) · timeout {} s · catch-up {} (at most {}) · overlap {}",
                job.retries,
                job.retry_backoff.as_secs(),
                job.timeout.as_secs(),
                format!("{:?}", job.catchup).to_lowercase(),
                job.max_catchup,
                format!("{:?}", job.overlap).to_lowercase(),
            );
        }
        let Some(s) = &job.schedule else {
            continue;
        };
        let local = |t: DateTime<Utc>| {
            format!(
                "{} ({})",
                t.with_timezone(&s.tz()).format("%Y-%m-%d %H:%M %Z"),
                t.format("%Y-%m-%dT%H:%MZ")
            )
        };
        for (i, t) in s.upcoming(after, count).into_iter().enumerate() {
            let label = if i == 0 { "next:" } else { "     " };
            let _ = writeln!(out, "  {label} {}", local(t));
        }
        let Some(since) = down_since else {
            continue;
        };
        let due = automation::due(s, Some(since), after, grace, job.catchup, job.max_catchup);
        let (runs, skipped): (Vec<_>, Vec<_>) = due.iter().partition(|d| d.trigger.is_some());
        match skipped.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(out, "  on restart: skip {}", local(one.scheduled_for));
            }
            [first, .., last] => {
                let _ = writeln!(
                    out,
                    "  on restart: skip {} missed, {} … {}",
                    skipped.len(),
                    local(first.scheduled_for),
                    local(last.scheduled_for)
                );
            }
        }
        for d in &runs {
            let trigger = d.trigger.map_or("", |t| t.as_str());
            let _ = writeln!(
                out,
                "  on restart: run {} ({trigger})",
                local(d.scheduled_for)
            );
        }
        if due.is_empty() {
            let _ = writeln!(out, "  on restart: nothing missed");
        }
    }
    out
}
