//! What a running stream has done, shared with whoever reports it (a status line, `/metrics`).

use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the freshness histogram's buckets.
pub const FRESHNESS_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A cumulative histogram in Prometheus' shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound of [`FRESHNESS_BUCKETS`].
    pub buckets: [u64; FRESHNESS_BUCKETS.len()],
    /// All observations.
    pub count: u64,
    /// Their sum, seconds.
    pub sum: f64,
}

impl Histogram {
    /// Counts `n` observations of `seconds`.
    pub fn observe(&mut self, seconds: f64, n: u64) {
        for (bound, bucket) in FRESHNESS_BUCKETS.iter().zip(&mut self.buckets) {
            if seconds <= *bound {
                *bucket += n;
            }
        }
        self.count += n;
        self.sum += seconds * n as f64;
    }

    /// The smallest bucket bound at or above the `q` quantile (`+Inf` past the last).
    pub fn quantile_bound(&self, q: f64) -> f64 {
        let rank = (q * self.count as f64).ceil() as u64;
        FRESHNESS_BUCKETS
            .iter()
            .zip(&self.buckets)
            .find(|(_, n)| **n >= rank.max(1))
            .map_or(f64::INFINITY, |(b, _)| *b)
    }
}

/// The stream's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamSnapshot {
    /// Micro-batches committed.
    pub batches: u64,
    /// Records committed to bronze (and refined into silver).
    pub records: u64,
    /// Of those, quarantined and duplicates.
    pub quarantined: u64,
    /// Duplicates dropped by silver.
    pub duplicates: u64,
    /// Parts refused because another consumer or writer had them.
    pub refused_parts: u64,
    /// Event receipt (or production, where the source knows) → visible in gold.
    pub freshness: Histogram,
    /// Event production → receipt by this consumer, where the source knows the production
    /// time (a Kafka message's timestamp): the broker's part of freshness.
    pub delivery: Histogram,
    /// When the last batch became visible, UTC microseconds.
    pub last_batch_at: Option<i64>,
    /// Wall time of the last batch (bronze → silver → gold).
    pub last_batch_seconds: f64,
    /// Per batch: taking the writer lock, catching up, bronze and silver.
    pub landing_seconds: Histogram,
    /// Per batch: the gold refresh.
    pub gold_seconds: Histogram,
    /// Consumer lag per partition, where the source knows it.
    pub lag: Vec<(String, i64)>,
    /// Whether the source is paused: the next batch is full and the last one still lands
    /// (backpressure).
    pub paused: bool,
}

/// Shared status of a running stream.
#[derive(Debug, Default)]
pub struct StreamStatus {
    inner: Mutex<StreamSnapshot>,
}

impl StreamStatus {
    /// A copy of the counters now.
    pub fn snapshot(&self) -> StreamSnapshot {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut StreamSnapshot)) {
        if let Ok(mut s) = self.inner.lock() {
            f(&mut s);
        }
    }
}

/// Seconds between two UTC microsecond instants, never negative.
pub(crate) fn seconds_between(from: i64, to: i64) -> f64 {
    Duration::from_micros((to - from).max(0) as u64).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_bounds_quantiles() {
        let mut h = Histogram::default();
        h.observe(0.2, 90);
        h.observe(1.7, 9);
        h.observe(400.0, 1);
        assert_eq!(h.count, 100);
        assert_eq!(h.buckets[0], 0);
        assert_eq!(h.buckets[1], 90);
        assert_eq!(h.buckets[5], 99);
        assert_eq!(h.buckets[11], 99);
        assert_eq!(h.quantile_bound(0.5), 0.25);
        assert_eq!(h.quantile_bound(0.99), 2.0);
        assert_eq!(h.quantile_bound(1.0), f64::INFINITY);
    }
}
