//! The scheduler over a real table root: what a restart after three days down runs under each
//! catch-up policy, and a run cut off at its timeout.

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use patientflow_ingest::{GoldRefresh, Maintenance, TableRoot};
use tokio::task::JoinSet;

use super::Scheduler;
use crate::automation::alerts::{Alerts, AlertsConfig, Sinks};
use crate::automation::execute::Context;
use crate::automation::history::{History, Run, Status, occurrence_key};
use crate::automation::jobs::{JobConfig, RunConfig, jobs};
use crate::automation::schedule::Trigger;
use crate::config::Config;

fn job(name: &str, catchup: &str) -> JobConfig {
    toml::from_str(&format!(
        "name = \"{name}\"\nkind = \"maintain\"\nschedule = \"0 * * * *\"\ncatchup = \"{catchup}\"\nmax_catchup = 5\nretries = 0\n"
    ))
    .unwrap()
}

async fn start(root: &TableRoot, configs: &[JobConfig]) -> (Arc<Scheduler>, JoinSet<()>) {
    let ctx = Context {
        root: root.clone(),
        gold: GoldRefresh::new(root.clone()),
        maintenance: Maintenance::new(root.clone()),
        source_timezone: None,
        batch_records: None,
    };
    let alerts = Arc::new(Alerts::new(
        &AlertsConfig::default(),
        Sinks::new(root.clone(), &AlertsConfig::default()).unwrap(),
        None,
    ));
    let mut tasks = JoinSet::new();
    let jobs = jobs(&RunConfig::default(), configs).unwrap();
    let scheduler = Scheduler::start(jobs, ctx, Arc::new(Config::default()), alerts, &mut tasks)
        .await
        .unwrap();
    (scheduler, tasks)
}

fn scheduled(history: &History, job: &str, trigger: Trigger) -> Vec<DateTime<Utc>> {
    let mut times: Vec<_> = history
        .list(Some(job), usize::MAX)
        .into_iter()
        .filter(|r| r.trigger == trigger)
        .filter_map(|r| r.scheduled_for)
        .collect();
    times.sort();
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_three_days_down_catches_up_as_each_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
    // The last process ran each job's occurrence of three days ago, then stopped.
    let hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let last = hour - Duration::days(3);
    let history = History::load(root.clone()).await.unwrap();
    let configs = [
        job("none", "none"),
        job("latest", "latest"),
        job("all", "all"),
    ];
    for c in &configs {
        let mut run = Run::queued(&c.name, "maintain", Trigger::Schedule, Some(last));
        run.status = Status::Succeeded;
        history.record(&run).await.unwrap();
    }
    let (scheduler, mut tasks) = start(&root, &configs).await;
    let h = scheduler.history();
    // The missed hours are (last, now]; the newest may be on time (within the grace).
    let on_time = Utc::now() - hour < Duration::seconds(300);
    let newest_missed = if on_time {
        hour - Duration::hours(1)
    } else {
        hour
    };
    assert!(scheduled(h, "none", Trigger::Catchup).is_empty());
    assert_eq!(scheduled(h, "latest", Trigger::Catchup), [newest_missed]);
    let all: Vec<_> = (0..5)
        .rev()
        .map(|i| newest_missed - Duration::hours(i))
        .collect();
    assert_eq!(
        scheduled(h, "all", Trigger::Catchup),
        all,
        "the newest five"
    );
    for job in ["none", "latest", "all"] {
        let runs = scheduled(h, job, Trigger::Schedule);
        assert_eq!(runs.len(), 1 + usize::from(on_time), "{job}: {runs:?}");
        // Idempotency: every queued occurrence has its own key, never one already run.
        let keys: std::collections::BTreeSet<_> = h
            .list(Some(job), usize::MAX)
            .into_iter()
            .map(|r| r.idempotency_key)
            .collect();
        assert_eq!(keys.len(), h.list(Some(job), usize::MAX).len());
        assert!(keys.contains(&occurrence_key(job, last)));
    }
    scheduler.stop();
    while tasks.join_next().await.is_some() {}

    // A second restart right away catches up nothing more: the occurrences are recorded.
    let before = History::load(root.clone())
        .await
        .unwrap()
        .list(None, usize::MAX)
        .len();
    let (scheduler, mut tasks) = start(&root, &configs).await;
    let catchups = scheduler
        .history()
        .list(None, usize::MAX)
        .into_iter()
        .filter(|r| r.trigger == Trigger::Catchup)
        .count();
    assert_eq!(catchups, 6, "1 latest + 5 all, from the first restart only");
    assert!(scheduler.history().list(None, usize::MAX).len() >= before);
    scheduler.stop();
    while tasks.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_fails_with_the_timeout_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
    let config: JobConfig =
        toml::from_str("name = \"gold\"\nkind = \"gold\"\nretries = 0\ntimeout_seconds = 1\n")
            .unwrap();
    let (scheduler, mut tasks) = start(&root, &[config]).await;
    // Another writer holds the root for longer than the job may take.
    let lock = root.lock_writer().unwrap();
    let run = match scheduler.submit("gold").await.unwrap() {
        super::Submitted::Queued(run) => run,
        other => panic!("{other:?}"),
    };
    let ended = loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = scheduler.history().get(&run.run_id).unwrap();
        if r.status.is_final() {
            break r;
        }
    };
    drop(lock);
    assert_eq!(ended.status, Status::Failed);
    assert_eq!(
        ended.error.as_deref(),
        Some("timed out after 1 s (the job's timeout_seconds)")
    );
    scheduler.stop();
    while tasks.join_next().await.is_some() {}
}
