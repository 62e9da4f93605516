//! The result cache: answers by query key, valid while every table they read is at the
//! version it was read at.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{QueryResult, Read};

/// A cached result with the tables (and versions) it was computed from.
type Entry = (Vec<Read>, QueryResult);

/// Results by query key, the least recently used evicted first: the dashboard's few queries,
/// asked every refresh, stay while a stream of one-off queries passes through (with the
/// oldest-first eviction of before, 256 ad-hoc aggregates pushed them out and under load they
/// ran again behind the scans: bench/load.sh).
#[derive(Debug)]
pub(super) struct Cache {
    capacity: usize,
    inner: Mutex<(HashMap<String, Entry>, VecDeque<String>)>,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<Entry> {
        let mut inner = self.inner.lock().ok()?;
        let (entries, order) = &mut *inner;
        let entry = entries.get(key).cloned()?;
        // Most recently used last.
        if let Some(used) = order
            .iter()
            .position(|k| k == key)
            .and_then(|at| order.remove(at))
        {
            order.push_back(used);
        }
        Some(entry)
    }

    pub(super) fn put(&self, key: String, reads: Vec<Read>, result: QueryResult) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let (entries, order) = &mut *inner;
        if entries.insert(key.clone(), (reads, result)).is_none() {
            order.push_back(key);
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                entries.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Schema;

    use super::*;

    fn result() -> QueryResult {
        QueryResult {
            schema: Arc::new(Schema::empty()),
            batches: Arc::from(Vec::new()),
            cached: false,
        }
    }

    #[test]
    fn the_least_recently_used_answer_goes_first() {
        let cache = Cache::new(2);
        cache.put("dashboard".into(), vec![], result());
        cache.put("one-off 1".into(), vec![], result());
        // The dashboard asks again; the next one-off pushes out the other one-off.
        assert!(cache.get("dashboard").is_some());
        cache.put("one-off 2".into(), vec![], result());
        assert!(cache.get("dashboard").is_some());
        assert!(cache.get("one-off 1").is_none());
        assert!(cache.get("one-off 2").is_some());
    }
}
