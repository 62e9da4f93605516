//! The source's own thread: polls, cuts micro-batches, hands them to the committer one at a
//! time, and pauses the source while the next batch is full and the last one still commits.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use super::{StopHandle, StreamStatus};
use crate::error::Result;
use crate::source::{Follow, Part, Resume, Settled};

/// Longest single poll, so settling and stopping are noticed promptly.
const POLL_SLICE: Duration = Duration::from_millis(100);

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
            match self.settled.try_recv() {
                Ok(settled) => {
                    self.source.settle(&settled)?;
                    in_flight = false;
                }
                Err(TryRecvError::Empty) => {}
                // The committer stopped (it failed or finished): nothing more can commit.
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
            let stopping = self.stop.is_stopped();
            let due = count >= self.max_records
                || (count > 0
                    && (stopping || first_at.is_some_and(|t| t.elapsed() >= self.interval)));
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
            self.status.update(|s| {
                s.paused = due;
                s.lag = self.source.lag();
            });
            let room = if due || stopping {
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
