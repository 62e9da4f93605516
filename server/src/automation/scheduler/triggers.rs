//! What offers runs: a job's schedule and its folder.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Entry, Scheduler, stopped};
use crate::automation::schedule::Trigger;
use crate::automation::watch::Watcher;

/// Follows a job's schedule from `from`, offering each occurrence when it comes.
pub(super) async fn tick(entry: Arc<Entry>, scheduler: Arc<Scheduler>, from: DateTime<Utc>) {
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
pub(super) async fn watch_folder(entry: Arc<Entry>, scheduler: Arc<Scheduler>, poll: Duration) {
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
