//! The source's own thread: polls, cuts micro-batches, hands them to the committer one at a
//! time. While the last batch still lands, the next one keeps filling past its interval, and
//! the source pauses once that one is full.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use super::{StopHandle, StreamStatus};
use crate::error::Result;
use crate::source::{Follow, Part, Resume, Settled};

/// Longest single poll, so settling and stopping are noticed promptly.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How long a due batch waits for the last one to settle before the source is read again
/// (at most 50 reads a second while a batch lands, instead of one a millisecond).
const SETTLE_WAIT: Duration = Duration::from_millis(20);

pub(super) struct Pump {
    pub(super) source: Box<dyn Follow>,
    pub(super) batches: Sender<Result<Vec<Part>>>,
    pub(super) settled: Receiver<Vec<Settled>>,
    pub(super) stop: StopHandle,
    pub(super) interval: Duration,
    pub(super) max_records: usize,
    pub(super) status: Arc<StreamStatus>,
}

impl Pump {
    pub(super) fn run(mut self) {
        if let Err(e) = self.pump() {
            // The committer is gone only when it failed already.
            let _ = self.batches.blocking_send(Err(e));
        }
        self.source.close();
    }

    fn pump(&mut self) -> Result<()> {
        let mut pending: Vec<Part> = Vec::new();
        let mut count = 0;
        let mut first_at: Option<Instant> = None;
        let mut in_flight = false;
        loop {
            // Once the next batch is due it waits only for the last one to settle: sleep on
            // that (it wakes this thread at once) rather than polling the source in a tight loop.
            let wait = if in_flight && self.due(count, first_at) {
                SETTLE_WAIT
            } else {
                Duration::ZERO
            };
            match self.settled.recv_timeout(wait) {
                Ok(settled) => {
                    self.source.settle(&settled)?;
                    in_flight = false;
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The committer stopped (it failed or finished): nothing more can commit.
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            let stopping = self.stop.is_stopped();
            let due = self.due(count, first_at);
            if due && !in_flight {
                let batch = std::mem::take(&mut pending);
                if self.batches.blocking_send(Ok(batch)).is_err() {
                    return Ok(());
                }
                in_flight = true;
                count = 0;
                first_at = None;
                continue;
            }
            if stopping && count == 0 && !in_flight {
                return Ok(());
            }
            // Due but the last batch still lands: this one keeps filling, so a busy committer
            // takes larger batches (its cost per batch spread over more records) instead of
            // falling behind; full, the source pauses.
            let full = count >= self.max_records;
            self.status.update(|s| {
                s.paused = full;
                s.lag = self.source.lag();
            });
            let room = if full || stopping {
                0
            } else {
                self.max_records - count
            };
            let wait = first_at
                .map_or(self.interval, |t| self.interval.saturating_sub(t.elapsed()))
                .clamp(Duration::from_millis(1), POLL_SLICE);
            for part in self.source.poll(wait, room)? {
                count += part.records.len();
                merge(&mut pending, part);
            }
            if count > 0 && first_at.is_none() {
                first_at = Some(Instant::now());
            }
        }
    }

    /// Whether a batch of `count` records, the first read at `first_at`, is to be cut.
    fn due(&self, count: usize, first_at: Option<Instant>) -> bool {
        count >= self.max_records
            || (count > 0
                && (self.stop.is_stopped()
                    || first_at.is_some_and(|t| t.elapsed() >= self.interval)))
    }
}

/// Adds `part` to `pending`, extending the pending part it continues.
fn merge(pending: &mut Vec<Part>, part: Part) {
    let continues = |p: &Part| match part.resume {
        Resume::At(start) => start == p.position,
        Resume::Before(first) => first == p.position + 1,
    };
    match pending.iter_mut().rev().find(|p| p.app_id == part.app_id) {
        Some(last) if continues(last) => last.extend(part),
        _ => pending.push(part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Record;

    fn part(id: &str, resume: Resume, position: i64, n: usize) -> Part {
        Part {
            app_id: id.into(),
            resume,
            position,
            source: id.into(),
            partition: None,
            records: (0..n)
                .map(|i| Record {
                    line: i as i64,
                    received_at: 0,
                    produced_at: None,
                    raw: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_due_while_the_last_one_lands_keeps_filling_until_that_one_settles() {
        use std::io::Write;

        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        std::fs::create_dir_all(&landing).unwrap();
        let file = landing.join("events.ndjson");
        let arrive = |n: usize| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .unwrap();
            f.write_all("{}\n".repeat(n).as_bytes()).unwrap();
        };
        let root =
            crate::storage::TableRoot::parse(dir.path().join("data").to_str().unwrap()).unwrap();
        let log = crate::source::PositionLog::new(root, runtime.handle().clone());
        let (batches, mut rx) = tokio::sync::mpsc::channel(1);
        let (settle, settled) = std::sync::mpsc::channel();
        let status = Arc::new(StreamStatus::default());
        let stop = StopHandle::default();
        let pump = Pump {
            source: Box::new(crate::source::follow::FollowLanding::new(&landing, log)),
            batches,
            settled,
            stop: stop.clone(),
            interval: Duration::from_millis(20),
            max_records: 25,
            status: status.clone(),
        };
        arrive(10);
        let thread = std::thread::spawn(move || pump.run());
        let records = |rx: &mut tokio::sync::mpsc::Receiver<Result<Vec<Part>>>| {
            let parts = rx.blocking_recv().unwrap().unwrap();
            parts.iter().map(|p| p.records.len()).sum::<usize>()
        };
        assert_eq!(records(&mut rx), 10);

        // While the first batch lands, three waves arrive, each well past the interval: the
        // next batch takes them until it holds `max_records`, then the source pauses.
        for _ in 0..3 {
            arrive(10);
            std::thread::sleep(Duration::from_millis(100));
        }
        let waited = Instant::now();
        while !status.snapshot().paused {
            assert!(waited.elapsed() < Duration::from_secs(10), "never paused");
            std::thread::sleep(Duration::from_millis(10));
        }
        settle.send(Vec::new()).unwrap();
        assert_eq!(records(&mut rx), 25);
        settle.send(Vec::new()).unwrap();
        assert_eq!(records(&mut rx), 5);
        stop.stop();
        settle.send(Vec::new()).unwrap();
        thread.join().unwrap();
        assert!(rx.blocking_recv().is_none());
    }

    #[test]
    fn contiguous_parts_merge_and_others_stay_apart() {
        let mut pending = Vec::new();
        merge(&mut pending, part("a", Resume::At(0), 10, 2));
        merge(&mut pending, part("a", Resume::At(10), 25, 3));
        merge(&mut pending, part("k", Resume::Before(5), 7, 3));
        merge(&mut pending, part("k", Resume::Before(8), 9, 2));
        // A restart from an earlier position (after a refusal) is a part of its own.
        merge(&mut pending, part("a", Resume::At(4), 30, 1));
        assert_eq!(pending.len(), 3);
        assert_eq!((pending[0].position, pending[0].records.len()), (25, 5));
        assert_eq!(pending[0].resume, Resume::At(0));
        assert_eq!((pending[1].position, pending[1].records.len()), (9, 5));
        assert_eq!(pending[2].resume, Resume::At(4));
    }
}
