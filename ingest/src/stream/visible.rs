//! A landed batch on its way to being visible: gold refreshes it on a task of its own while
//! the committer lands the next batch in bronze and silver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::StreamStatus;
use super::status::seconds_between;
use crate::error::{Error, Result};
use crate::gold::GoldRefresh;
use crate::silver::Counts;
use crate::storage::WriterLock;

/// A batch in bronze and silver, not yet in gold.
#[derive(Debug)]
pub(super) struct Landed {
    /// When its commit started (before taking the writer lock).
    pub(super) started: Instant,
    /// Taking the lock, catching up, bronze and silver.
    pub(super) landing: Duration,
    pub(super) counts: Counts,
    /// Parts not committed because the log had them or the partition was lost.
    pub(super) refused: u64,
    /// Each record's production time (or receipt, where the source does not know), UTC micros.
    pub(super) stamps: Vec<i64>,
    /// Each record's production → receipt (seconds), where the source knows its production.
    pub(super) delivery: Vec<f64>,
}

impl Landed {
    /// Records the batch as visible to queries now, after `gold` of gold refresh.
    pub(super) fn visible(self, status: &StreamStatus, gold: Duration) {
        let visible = chrono::Utc::now().timestamp_micros();
        status.update(|s| {
            s.batches += 1;
            s.records += self.counts.records_in;
            s.quarantined += self.counts.quarantined;
            s.duplicates += self.counts.duplicates;
            s.refused_parts += self.refused;
            for t in &self.stamps {
                s.freshness.observe(seconds_between(*t, visible), 1);
            }
            for d in &self.delivery {
                s.delivery.observe(*d, 1);
            }
            s.last_batch_at = Some(visible);
            s.last_batch_seconds = self.started.elapsed().as_secs_f64();
            s.landing_seconds.observe(self.landing.as_secs_f64(), 1);
            s.gold_seconds.observe(gold.as_secs_f64(), 1);
        });
        tracing::debug!(
            records = self.counts.records_in,
            refused = self.refused,
            landing_seconds = self.landing.as_secs_f64(),
            gold_seconds = gold.as_secs_f64(),
            "micro-batch visible"
        );
    }
}

/// Gold refreshing for a landed batch. It holds the root's writer lock, shared with the
/// landing of the next batch; the lock is released once both are done.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) lock: Arc<WriterLock>,
    task: JoinHandle<Result<()>>,
}

impl InFlight {
    /// Starts refreshing gold for `landed` under `lock`; the batch is recorded as visible in
    /// `status` as soon as gold commits.
    pub(super) fn start(
        refresh: &GoldRefresh,
        lock: Arc<WriterLock>,
        landed: Landed,
        status: Arc<StreamStatus>,
    ) -> Self {
        let refresh = refresh.clone();
        let held = lock.clone();
        let task = tokio::spawn(async move {
            let _lock = held;
            let started = Instant::now();
            refresh.run_locked().await?;
            landed.visible(&status, started.elapsed());
            Ok(())
        });
        Self { lock, task }
    }

    /// Waits for the refresh to finish.
    pub(super) async fn finish(self) -> Result<()> {
        done(self.task.await)
    }

    /// Waits for the refresh in `in_flight`, if any (otherwise never returns), leaving it there:
    /// for a `select!` beside the next batch.
    pub(super) async fn wait(in_flight: &mut Option<Self>) -> Result<()> {
        match in_flight {
            Some(f) => done((&mut f.task).await),
            None => std::future::pending().await,
        }
    }
}

fn done(joined: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    joined.map_err(|e| Error::Internal(format!("the gold refresh task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visible_batch_observes_each_record_s_freshness_and_known_delivery() {
        let status = StreamStatus::default();
        let now = chrono::Utc::now().timestamp_micros();
        let landed = Landed {
            started: Instant::now(),
            landing: Duration::from_millis(200),
            counts: Counts::for_rules(0),
            refused: 0,
            // Two records produced 3 s ago, one whose production is unknown (read 0.2 s ago).
            stamps: vec![now - 3_000_000, now - 3_000_000, now - 200_000],
            delivery: vec![0.05, 1.2],
        };
        landed.visible(&status, Duration::from_millis(300));
        let s = status.snapshot();
        assert_eq!((s.batches, s.freshness.count, s.delivery.count), (1, 3, 2));
        // Freshness: one record within 0.25 s, all three within 5 s.
        assert_eq!((s.freshness.buckets[1], s.freshness.buckets[7]), (1, 3));
        // Delivery: one within 0.1 s, both within 1.5 s.
        assert_eq!((s.delivery.buckets[0], s.delivery.buckets[4]), (1, 2));
    }
}
