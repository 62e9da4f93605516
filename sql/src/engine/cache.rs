//! The result cache: answers by query key, valid while every table they read is at the
//! version it was read at.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{QueryResult, Read};

/// A cached result with the tables (and versions) it was computed from.
type Entry = (Vec<Read>, QueryResult);

/// Results by query key, oldest evicted first.
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
        self.inner.lock().ok()?.0.get(key).cloned()
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
