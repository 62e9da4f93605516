//! A query's share of the memory pool. Every executing query gets its own pool, a fixed share
//! of the engine's (the pool divided by the slots admission control gives out), that draws on
//! the shared one: a query that would pass its share spills (sorts, aggregates, joins that
//! can) or fails alone, and its neighbours keep theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// One query's pool: at most `share` bytes of `shared`.
#[derive(Debug)]
pub(super) struct Share {
    shared: Arc<dyn MemoryPool>,
    share: usize,
    used: AtomicUsize,
}

impl Share {
    pub(super) fn new(shared: Arc<dyn MemoryPool>, share: usize) -> Self {
        Self {
            shared,
            share,
            used: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query share of {} MiB", self.share >> 20)
    }
}

impl MemoryPool for Share {
    fn name(&self) -> &str {
        "patientflow_query_share"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let new = used.checked_add(additional)?;
                (new <= self.share).then_some(new)
            })
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "the query needs more than its share of the memory pool ({} MiB; {} MiB in use, {} MiB more asked by {}); narrow it with filters, aggregate it, or raise serve.memory_limit_mb",
                    self.share >> 20,
                    used >> 20,
                    additional.div_ceil(1 << 20),
                    reservation.consumer().name()
                ))
            })?;
        if let Err(e) = self.shared.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.share)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    use super::*;

    #[test]
    fn a_query_past_its_share_fails_alone() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(100 << 20));
        let greedy = Arc::new(Share::new(Arc::clone(&shared), 40 << 20)) as Arc<dyn MemoryPool>;
        let neighbour = Arc::new(Share::new(Arc::clone(&shared), 40 << 20)) as Arc<dyn MemoryPool>;
        let a = MemoryConsumer::new("sort").register(&greedy);
        let b = MemoryConsumer::new("aggregate").register(&neighbour);
        a.try_grow(30 << 20).unwrap();
        let refused = a.try_grow(20 << 20).unwrap_err().to_string();
        assert!(
            refused.contains("its share of the memory pool (40 MiB"),
            "{refused}"
        );
        assert_eq!(greedy.reserved(), 30 << 20);
        // The neighbour still gets its whole share.
        b.try_grow(40 << 20).unwrap();
        assert_eq!(shared.reserved(), 70 << 20);
        drop((a, b));
        assert_eq!((shared.reserved(), greedy.reserved()), (0, 0));
    }
}
