//! Where records come from. Each source yields raw records with a source position that
//! bronze records in the same Delta commit as the data.
//!
//! A one-shot ingest reads the landing folder to its end ([`landing`]). A followed source
//! ([`Follow`]: the landing folder as it grows, [`follow::FollowLanding`], or a Kafka consumer
//! group, [`kafka::KafkaSource`]) is polled on a thread of its own and yields [`Part`]s, each
//! the records of one position range; the stream commits the parts whose range the Delta log
//! does not hold yet and tells the source how each one settled.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::storage::{TableRoot, txn_version};
use crate::tables::BRONZE_EVENTS;

pub mod follow;
pub mod kafka;
pub mod landing;

/// One raw record as read.
#[derive(Debug, Clone)]
pub struct Record {
    /// Line number (files) or offset (Kafka) within the source.
    pub line: i64,
    /// When patientflow read it, UTC microseconds (bronze's `received_at`).
    pub received_at: i64,
    /// When the source says it was produced (a Kafka message's timestamp), for freshness.
    pub produced_at: Option<i64>,
    /// The bytes, exactly as received.
    pub raw: Vec<u8>,
}

/// Where a part starts, as the Delta log must record it for the part to be new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The log's position must be exactly this (a file's byte offset; no entry means 0).
    At(i64),
    /// The log's position must be before this (a partition's first offset in the part; no
    /// entry means nothing was consumed).
    Before(i64),
}

/// The records of one source position range.
#[derive(Debug, Clone)]
pub struct Part {
    /// The application-transaction id recording the position (`landing:<path>`,
    /// `kafka:<topic>:<partition>`).
    pub app_id: String,
    /// Where the part starts.
    pub resume: Resume,
    /// The position the part reaches, recorded with it.
    pub position: i64,
    /// Bronze's `source`: a file path or a topic.
    pub source: String,
    /// Bronze's `source_partition`.
    pub partition: Option<i32>,
    /// The records, in source order.
    pub records: Vec<Record>,
}

impl Part {
    /// Whether the Delta log, holding `logged` for this part's id, lacks this part.
    pub fn is_new(&self, logged: Option<i64>) -> bool {
        match self.resume {
            Resume::At(start) => logged.unwrap_or(0) == start,
            Resume::Before(first) => logged.is_none_or(|l| l < first),
        }
    }

    /// Appends `next`, which continues this part (same id, starting where this one ends).
    pub fn extend(&mut self, next: Part) {
        self.position = next.position;
        self.records.extend(next.records);
    }
}

/// How a part of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The part's position id.
    pub app_id: String,
    /// The part's partition (Kafka).
    pub partition: Option<i32>,
    /// Committed with its position; otherwise refused (another consumer holds it, or the log
    /// already has it) and the source should go on from `logged`.
    pub committed: bool,
    /// The position the Delta log holds for the id after this batch.
    pub logged: Option<i64>,
}

/// The position ids a source currently owns; `None`: all of them (a landing folder). The
/// stream holds the lock while it commits, and a consumer losing partitions takes it before it
/// lets them go, so a revoked partition's batch is never committed by the consumer that lost
/// it.
pub type Ownership = Arc<tokio::sync::Mutex<Option<HashSet<String>>>>;

/// A source followed as records arrive; polled on a thread of its own.
pub trait Follow: Send {
    /// Reads what has arrived, waiting at most `wait` when nothing has; at most `room`
    /// records. With `room` 0 it only keeps the source alive (a Kafka consumer pauses its
    /// partitions and serves its group).
    fn poll(&mut self, wait: Duration, room: usize) -> Result<Vec<Part>>;
    /// How the parts last handed over settled.
    fn settle(&mut self, settled: &[Settled]) -> Result<()>;
    /// The position ids this source owns.
    fn ownership(&self) -> Ownership;
    /// Records behind the newest per partition (`topic/partition`, lag), where the source
    /// knows.
    fn lag(&self) -> Vec<(String, i64)> {
        Vec::new()
    }
    /// Leaves the source (a consumer group) cleanly.
    fn close(&mut self) {}
}

/// Reads consumed positions from bronze's Delta log, from a source's own thread.
#[derive(Debug, Clone)]
pub struct PositionLog {
    root: TableRoot,
    runtime: tokio::runtime::Handle,
}

impl PositionLog {
    /// Positions of `root`'s bronze table, read through `runtime`.
    pub fn new(root: TableRoot, runtime: tokio::runtime::Handle) -> Self {
        Self { root, runtime }
    }

    /// The positions the log holds now for `app_ids` (blocks; call off the runtime).
    pub fn read(&self, app_ids: &[String]) -> Result<Vec<Option<i64>>> {
        self.runtime.block_on(async {
            let table = self.root.open(BRONZE_EVENTS).await?;
            let mut out = Vec::with_capacity(app_ids.len());
            for id in app_ids {
                out.push(txn_version(&table, BRONZE_EVENTS, id).await?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(resume: Resume) -> Part {
        Part {
            app_id: "x".into(),
            resume,
            position: 10,
            source: "s".into(),
            partition: None,
            records: Vec::new(),
        }
    }

    #[test]
    fn a_part_is_new_only_where_the_log_stops() {
        assert!(part(Resume::At(0)).is_new(None));
        assert!(part(Resume::At(5)).is_new(Some(5)));
        assert!(!part(Resume::At(5)).is_new(Some(9)));
        assert!(!part(Resume::At(5)).is_new(None));
        assert!(part(Resume::Before(7)).is_new(None));
        assert!(part(Resume::Before(7)).is_new(Some(6)));
        assert!(!part(Resume::Before(7)).is_new(Some(7)));
        assert!(!part(Resume::Before(7)).is_new(Some(12)));
    }
}
