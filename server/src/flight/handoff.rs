//! Results computed on GetFlightInfo, handed to the DoGet that follows.
//!
//! A Flight SQL client asks GetFlightInfo (for the schema and a ticket), then DoGet (for the
//! rows). The query runs once, on GetFlightInfo, and its result waits here for the DoGet:
//! kept per access and query, taken by the first DoGet, dropped after [`TTL`] and within a
//! memory budget. A DoGet that finds nothing here (another server instance answered the
//! GetFlightInfo, or the result expired or did not fit) runs the query itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use patientflow_sql::QueryResult;

/// How long a result waits for its DoGet.
const TTL: Duration = Duration::from_secs(60);

/// Bytes of results waiting at most; a result that does not fit is not kept.
const BUDGET: usize = 512 << 20;

/// Results waiting for their DoGet, by access fingerprint and query key.
#[derive(Debug, Default)]
pub(super) struct Handoff(Mutex<Waiting>);

#[derive(Debug, Default)]
struct Waiting {
    results: HashMap<(String, String), Kept>,
    bytes: usize,
}

/// A result, when it was kept and its size in bytes.
#[derive(Debug)]
struct Kept {
    at: Instant,
    size: usize,
    result: QueryResult,
}

impl Handoff {
    /// Keeps `result` of query `key`, `size` bytes, for the next DoGet of the same access.
    pub(super) fn put(&self, access: &str, key: String, result: QueryResult, size: usize) {
        let Ok(mut waiting) = self.0.lock() else {
            return;
        };
        let at = Instant::now();
        let Waiting { results, bytes } = &mut *waiting;
        results.retain(|_, kept| {
            let fresh = at.duration_since(kept.at) < TTL;
            if !fresh {
                *bytes -= kept.size;
            }
            fresh
        });
        if *bytes + size > BUDGET {
            return;
        }
        *bytes += size;
        let kept = Kept { at, size, result };
        if let Some(old) = results.insert((access.to_string(), key), kept) {
            *bytes -= old.size;
        }
    }

    /// The result of query `key` kept for this access, if any (it is kept no longer).
    pub(super) fn take(&self, access: &str, key: &str) -> Option<QueryResult> {
        let mut waiting = self.0.lock().ok()?;
        let kept = waiting
            .results
            .remove(&(access.to_string(), key.to_string()))?;
        waiting.bytes -= kept.size;
        (kept.at.elapsed() < TTL).then_some(kept.result)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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

    #[test]
    fn a_result_is_taken_once_and_only_by_its_access() {
        let handoff = Handoff::default();
        let three = result(3);
        let size = three.bytes();
        handoff.put("clinician", "sql\0SELECT 1".into(), three, size);
        assert!(handoff.take("admin", "sql\0SELECT 1").is_none());
        assert!(handoff.take("clinician", "sql\0SELECT 2").is_none());
        assert_eq!(
            handoff.take("clinician", "sql\0SELECT 1").map(|r| r.rows()),
            Some(3)
        );
        assert!(handoff.take("clinician", "sql\0SELECT 1").is_none());
        assert_eq!(handoff.0.lock().unwrap().bytes, 0);
    }

    #[test]
    fn results_over_the_budget_are_not_kept() {
        let handoff = Handoff::default();
        let big = result(1 << 20);
        let size = big.bytes();
        let fits = BUDGET / size;
        for i in 0..fits + 1 {
            handoff.put("admin", format!("q{i}"), big.clone(), size);
        }
        assert_eq!(handoff.0.lock().unwrap().results.len(), fits);
        assert!(handoff.0.lock().unwrap().bytes <= BUDGET);
        assert!(handoff.take("admin", &format!("q{fits}")).is_none());
        // Taking one frees its share of the budget.
        assert!(handoff.take("admin", "q0").is_some());
        handoff.put("admin", "again".into(), big, size);
        assert!(handoff.take("admin", "again").is_some());
    }
}
