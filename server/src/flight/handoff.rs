//! Queries started before their DoGet, handed to it.
//!
//! A Flight SQL client asks GetFlightInfo (for the schema and a ticket), then DoGet (for the
//! rows). GetFlightInfo plans the query, which is all a schema needs, and starts it in the
//! background; the FlightInfo goes back at once, so the query runs while the client reads the
//! answer and sends its DoGet (about 1.5 ms with the ADBC driver). A statement prepared without
//! parameters starts one step earlier, when it is prepared (the ADBC driver prepares every
//! query, then asks GetFlightInfo and DoGet): its GetFlightInfo finds it here and answers with
//! the schema planned at prepare time. A cached result is handed over ready. Either waits here:
//! kept per access and query, taken by the first DoGet, dropped after [`TTL`] and within a
//! memory budget. A DoGet that finds nothing here (another server instance answered the
//! GetFlightInfo, or the result expired or did not fit) runs the query itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patientflow_sql::{Error, QueryResult};
use tokio::sync::oneshot;

/// How long a result waits for its DoGet.
const TTL: Duration = Duration::from_secs(60);

/// Bytes of results waiting at most; a result that does not fit is not kept.
const BUDGET: usize = 512 << 20;

/// Results waiting for their DoGet, by access fingerprint and query key.
#[derive(Debug, Default)]
pub(super) struct Handoff(Mutex<Waiting>);

/// Access fingerprint and query key.
type Slot = (String, String);

#[derive(Debug, Default)]
struct Waiting {
    results: HashMap<Slot, Kept>,
    bytes: usize,
    /// Numbers the kept entries, so a finished query settles its own entry only.
    next_id: u64,
}

/// An answer, when it was kept and its size in bytes (0 while it runs).
#[derive(Debug)]
struct Kept {
    id: u64,
    at: Instant,
    size: usize,
    answer: Answer,
}

/// A kept answer: a result, or the query still running.
#[derive(Debug)]
pub(super) enum Answer {
    Ready(QueryResult),
    Running(oneshot::Receiver<Result<QueryResult, Error>>),
}

impl Answer {
    /// The result, once there (`None` when the query was dropped before it finished).
    pub(super) async fn result(self) -> Option<Result<QueryResult, Error>> {
        match self {
            Answer::Ready(result) => Some(Ok(result)),
            Answer::Running(receiver) => receiver.await.ok(),
        }
    }
}

/// A query started for a DoGet: [`Running::finish`] hands its result over.
#[derive(Debug)]
pub(super) struct Running {
    handoff: Arc<Handoff>,
    slot: Slot,
    id: u64,
    sender: oneshot::Sender<Result<QueryResult, Error>>,
}

impl Running {
    /// Hands `result` to the DoGet, counting it against the budget while it waits (one that
    /// does not fit is dropped; its DoGet runs the query again).
    pub(super) fn finish(self, result: Result<QueryResult, Error>) {
        let size = result.as_ref().map_or(0, QueryResult::bytes);
        if self.sender.send(result).is_err() {
            return; // taken and abandoned, or expired
        }
        let Ok(mut waiting) = self.handoff.0.lock() else {
            return;
        };
        let Waiting { results, bytes, .. } = &mut *waiting;
        match results.get_mut(&self.slot) {
            Some(kept) if kept.id == self.id && *bytes + size <= BUDGET => {
                kept.size = size;
                *bytes += size;
            }
            Some(kept) if kept.id == self.id => {
                results.remove(&self.slot);
            }
            _ => {} // already taken by its DoGet
        }
    }
}

impl Handoff {
    /// Keeps the ready `result` of query `key`, `size` bytes, for the next DoGet of the same
    /// access.
    pub(super) fn put(&self, access: &str, key: String, result: QueryResult, size: usize) {
        self.keep((access.to_string(), key), size, Answer::Ready(result));
    }

    /// Keeps a place for query `key` of `access`, started now; the returned handle fills it.
    pub(super) fn start(self: &Arc<Self>, access: &str, key: String) -> Running {
        let (sender, receiver) = oneshot::channel();
        let slot = (access.to_string(), key);
        let id = self.keep(slot.clone(), 0, Answer::Running(receiver));
        Running {
            handoff: Arc::clone(self),
            slot,
            id,
            sender,
        }
    }

    /// Keeps `answer` in `slot` (after dropping expired ones) unless it does not fit; returns
    /// the entry's number.
    fn keep(&self, slot: Slot, size: usize, answer: Answer) -> u64 {
        let Ok(mut waiting) = self.0.lock() else {
            return 0;
        };
        let at = Instant::now();
        let Waiting {
            results,
            bytes,
            next_id,
        } = &mut *waiting;
        results.retain(|_, kept| {
            let fresh = at.duration_since(kept.at) < TTL;
            if !fresh {
                *bytes -= kept.size;
            }
            fresh
        });
        *next_id += 1;
        if *bytes + size > BUDGET {
            return *next_id;
        }
        *bytes += size;
        let kept = Kept {
            id: *next_id,
            at,
            size,
            answer,
        };
        if let Some(old) = results.insert(slot, kept) {
            *bytes -= old.size;
        }
        *next_id
    }

    /// Whether an answer to query `key` waits for this access (it stays).
    pub(super) fn holds(&self, access: &str, key: &str) -> bool {
        self.0.lock().is_ok_and(|waiting| {
            waiting
                .results
                .get(&(access.to_string(), key.to_string()))
                .is_some_and(|kept| kept.at.elapsed() < TTL)
        })
    }

    /// The answer to query `key` kept for this access, if any (it is kept no longer).
    pub(super) fn take(&self, access: &str, key: &str) -> Option<Answer> {
        let mut waiting = self.0.lock().ok()?;
        let kept = waiting
            .results
            .remove(&(access.to_string(), key.to_string()))?;
        waiting.bytes -= kept.size;
        (kept.at.elapsed() < TTL).then_some(kept.answer)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn result(rows: i32) -> QueryResult {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let column = Arc::new(Int32Array::from_iter_values(0..rows));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![column]).unwrap();
        QueryResult {
            schema,
            batches: vec![batch].into(),
            cached: false,
        }
    }

    async fn rows(answer: Option<Answer>) -> Option<usize> {
        Some(answer?.result().await?.unwrap().rows())
    }

    fn bytes(handoff: &Handoff) -> usize {
        handoff.0.lock().unwrap().bytes
    }

    #[tokio::test]
    async fn a_result_is_taken_once_and_only_by_its_access() {
        let handoff = Handoff::default();
        let three = result(3);
        let size = three.bytes();
        handoff.put("clinician", "sql\0SELECT 1".into(), three, size);
        assert!(handoff.take("admin", "sql\0SELECT 1").is_none());
        assert!(handoff.take("clinician", "sql\0SELECT 2").is_none());
        assert_eq!(
            rows(handoff.take("clinician", "sql\0SELECT 1")).await,
            Some(3)
        );
        assert!(handoff.take("clinician", "sql\0SELECT 1").is_none());
        assert_eq!(bytes(&handoff), 0);
    }

    #[tokio::test]
    async fn results_over_the_budget_are_not_kept() {
        let handoff = Handoff::default();
        let big = result(1 << 20);
        let size = big.bytes();
        let fits = BUDGET / size;
        for i in 0..fits + 1 {
            handoff.put("admin", format!("q{i}"), big.clone(), size);
        }
        assert_eq!(handoff.0.lock().unwrap().results.len(), fits);
        assert!(bytes(&handoff) <= BUDGET);
        assert!(handoff.take("admin", &format!("q{fits}")).is_none());
        // Taking one frees its share of the budget.
        assert!(handoff.take("admin", "q0").is_some());
        handoff.put("admin", "again".into(), big, size);
        assert!(handoff.take("admin", "again").is_some());
    }

    #[tokio::test]
    async fn a_running_query_is_awaited_by_the_doget_that_takes_it() {
        let handoff = Arc::new(Handoff::default());
        let running = handoff.start("admin", "q".into());
        // A prepared statement's GetFlightInfo sees it started, for that access only.
        assert!(handoff.holds("admin", "q"));
        assert!(!handoff.holds("clinician", "q"));
        assert!(!handoff.holds("admin", "other"));
        let answer = handoff.take("admin", "q");
        assert!(matches!(answer, Some(Answer::Running(_))));
        assert!(!handoff.holds("admin", "q"));
        let finish = tokio::spawn(async move { running.finish(Ok(result(5))) });
        assert_eq!(rows(answer).await, Some(5));
        finish.await.unwrap();
        // Taken before it finished: nothing stays counted.
        assert_eq!(bytes(&handoff), 0);
    }

    #[tokio::test]
    async fn a_finished_query_waits_within_the_budget() {
        let handoff = Arc::new(Handoff::default());
        let five = result(5);
        let size = five.bytes();
        handoff.start("admin", "q".into()).finish(Ok(five));
        assert_eq!(bytes(&handoff), size);
        assert_eq!(rows(handoff.take("admin", "q")).await, Some(5));
        assert_eq!(bytes(&handoff), 0);

        // A result larger than what is left of the budget is dropped; its DoGet reruns it.
        let big = result(1 << 20);
        let fill = big.bytes();
        for i in 0..BUDGET / fill {
            handoff.put("admin", format!("fill{i}"), big.clone(), fill);
        }
        let before = bytes(&handoff);
        handoff.start("admin", "late".into()).finish(Ok(big));
        assert!(handoff.take("admin", "late").is_none());
        assert_eq!(bytes(&handoff), before);
    }

    #[tokio::test]
    async fn a_failed_query_hands_over_its_error() {
        let handoff = Arc::new(Handoff::default());
        handoff
            .start("admin", "q".into())
            .finish(Err(Error::InvalidQuery("no such column".into())));
        let answer = handoff.take("admin", "q").unwrap().result().await.unwrap();
        assert!(matches!(answer, Err(Error::InvalidQuery(_))));
    }
}
