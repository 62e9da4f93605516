//! Admission control: a bounded number of queries execute at once; the others wait in a queue
//! that is fair between principals (round robin: each principal's queries in arrival order,
//! principals taking turns), so one BI extract of a hundred queries cannot starve the
//! dashboards. Only a full queue or a wait past the queue timeout refuses a query.
//!
//! One principal executes at most `max_per_principal` queries at once (by default every slot
//! but one), so a BI extract never holds every slot: a dashboard query finds one free, or waits
//! for at most the queries ahead of it. Otherwise the controller is work-conserving: a free
//! slot is never left idle while someone it may go to waits.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Limits of the admission controller.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Queries executing at once.
    pub max_executing: usize,
    /// Queries of one principal executing at once.
    pub max_per_principal: usize,
    /// Queries waiting at once; one more is refused at once.
    pub max_queued: usize,
    /// A query waiting longer is refused.
    pub queue_timeout: Duration,
}

impl AdmissionConfig {
    /// The defaults for a machine with `cores` cores and a memory pool of `memory_limit`
    /// bytes: two queries per core, but never a share of the pool below 128 MiB; a queue of 32
    /// per slot; a 10 s wait at most.
    pub fn for_machine(cores: usize, memory_limit: usize) -> Self {
        let by_memory = (memory_limit / MIN_SHARE).max(1);
        let max_executing = (2 * cores).clamp(1, by_memory);
        Self {
            max_executing,
            max_per_principal: Self::per_principal(max_executing),
            max_queued: 32 * max_executing,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

impl AdmissionConfig {
    /// The default cap of one principal's executing queries: every slot but one.
    pub fn per_principal(max_executing: usize) -> usize {
        max_executing.saturating_sub(1).max(1)
    }
}

/// The smallest share of the memory pool a query gets by default.
const MIN_SHARE: usize = 128 << 20;

/// Why a query was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue was full when the query arrived.
    QueueFull,
    /// The query waited past the queue timeout.
    QueueTimeout,
}

impl Refusal {
    /// The label of the refusal in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::QueueTimeout => "queue_timeout",
        }
    }
}

/// Counters of the controller, for `/metrics`.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    /// Queries admitted (at once or after waiting).
    pub admitted: AtomicU64,
    /// Queries that had to wait.
    pub queued: AtomicU64,
    /// Microseconds waited by admitted queries.
    pub wait_micros: AtomicU64,
    /// Refused: the queue was full.
    pub queue_full: AtomicU64,
    /// Refused: waited past the queue timeout.
    pub queue_timeout: AtomicU64,
}

/// The admission controller.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    state: Mutex<State>,
    stats: AdmissionStats,
    /// Exponential average of a query's execution time, microseconds (for `Retry-After`).
    average_micros: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    executing: usize,
    /// Executing queries by principal.
    running: HashMap<Arc<str>, usize>,
    waiting: usize,
    next_id: u64,
    /// Waiting queries by principal, each principal's in arrival order.
    queues: HashMap<Arc<str>, VecDeque<Waiter>>,
    /// Principals with waiting queries, in the order they get their next turn.
    turns: VecDeque<Arc<str>>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    grant: oneshot::Sender<()>,
}

/// A slot to execute in; dropping it frees the slot for the next waiting query.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    principal: Arc<str>,
    started: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_micros() as u64;
        let old = self.admission.average_micros.load(Ordering::Relaxed);
        let new = if old == 0 { took } else { (old * 7 + took) / 8 };
        self.admission.average_micros.store(new, Ordering::Relaxed);
        self.admission.release(&self.principal);
    }
}

impl Admission {
    /// A controller with `config`'s limits.
    pub fn new(config: AdmissionConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: Mutex::new(State::default()),
            stats: AdmissionStats::default(),
            average_micros: AtomicU64::new(0),
        })
    }

    /// The limits.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &AdmissionStats {
        &self.stats
    }

    /// Queries executing now.
    pub fn executing(&self) -> usize {
        self.lock().executing
    }

    /// Queries waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// How long a refused client should wait before trying again: the queue ahead of it
    /// divided among the slots, at the average execution time; 1 to 30 s.
    pub fn retry_after(&self) -> Duration {
        let average = self.average_micros.load(Ordering::Relaxed);
        let ahead = self.waiting() as u64 + 1;
        let micros = average * ahead / self.config.max_executing.max(1) as u64;
        Duration::from_secs(micros.div_ceil(1_000_000).clamp(1, 30))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters and queues updated under the lock without panicking
        // code in between, so a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a query of `principal`: at once when one is free and the principal has no
    /// query waiting before this one; otherwise after waiting its turn.
    pub async fn admit(self: &Arc<Self>, principal: &str) -> Result<Permit, Refusal> {
        let arrived = Instant::now();
        let (id, granted) = {
            let mut state = self.lock();
            let own_queue_empty = state.queues.get(principal).is_none_or(VecDeque::is_empty);
            if own_queue_empty && self.may_run(&state, principal) {
                let principal = state.start(principal);
                drop(state);
                self.stats.admitted.fetch_add(1, Ordering::Relaxed);
                return Ok(self.permit(principal));
            }
            if state.waiting >= self.config.max_queued {
                drop(state);
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::QueueFull);
            }
            let (tx, rx) = oneshot::channel();
            state.next_id += 1;
            let id = state.next_id;
            let principal: Arc<str> = Arc::from(principal);
            let queue = state.queues.entry(Arc::clone(&principal)).or_default();
            queue.push_back(Waiter { id, grant: tx });
            if queue.len() == 1 {
                state.turns.push_back(principal);
            }
            state.waiting += 1;
            (id, rx)
        };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let mut waiting = Waiting {
            admission: self,
            principal,
            id,
            granted,
            done: false,
        };
        let outcome = tokio::time::timeout(self.config.queue_timeout, &mut waiting.granted).await;
        waiting.done = true;
        match outcome {
            Ok(Ok(())) => {}
            // The sender is never dropped without sending, but treat it as a grant lost.
            Ok(Err(_)) => return Err(Refusal::QueueTimeout),
            Err(_) => {
                if !waiting.withdraw() {
                    // Granted as the wait ran out: the slot is this query's.
                    self.record_wait(arrived);
                    return Ok(self.permit(Arc::from(principal)));
                }
                self.stats.queue_timeout.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::QueueTimeout);
            }
        }
        self.record_wait(arrived);
        Ok(self.permit(Arc::from(principal)))
    }

    fn record_wait(&self, arrived: Instant) {
        self.stats.admitted.fetch_add(1, Ordering::Relaxed);
        self.stats
            .wait_micros
            .fetch_add(arrived.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    fn permit(self: &Arc<Self>, principal: Arc<str>) -> Permit {
        Permit {
            admission: Arc::clone(self),
            principal,
            started: Instant::now(),
        }
    }

    /// Whether a slot is free and `principal` is under its cap.
    fn may_run(&self, state: &State, principal: &str) -> bool {
        state.executing < self.config.max_executing
            && state.running.get(principal).copied().unwrap_or(0) < self.config.max_per_principal
    }

    /// Frees `principal`'s slot and hands slots to waiting queries, principals in turn (a
    /// principal at its cap lets its turn pass).
    fn release(&self, principal: &str) {
        let mut state = self.lock();
        state.finish(principal);
        let mut passed = 0;
        while state.executing < self.config.max_executing && passed < state.turns.len() {
            let Some(next) = state.turns.pop_front() else {
                break;
            };
            if !self.may_run(&state, &next) {
                state.turns.push_back(next);
                passed += 1;
                continue;
            }
            passed = 0;
            let Some(queue) = state.queues.get_mut(&next) else {
                continue;
            };
            let Some(waiter) = queue.pop_front() else {
                continue;
            };
            if queue.is_empty() {
                state.queues.remove(&next);
            } else {
                state.turns.push_back(Arc::clone(&next));
            }
            state.waiting -= 1;
            // A waiter that has gone (its request dropped) removed itself under this lock,
            // so the send reaches a live receiver.
            if waiter.grant.send(()).is_ok() {
                state.start(&next);
            }
        }
    }
}

impl State {
    /// Counts a query of `principal` as executing; returns the principal's shared name.
    fn start(&mut self, principal: &str) -> Arc<str> {
        self.executing += 1;
        if let Some((name, n)) = self.running.get_key_value(principal) {
            let name = Arc::clone(name);
            let n = *n;
            self.running.insert(Arc::clone(&name), n + 1);
            return name;
        }
        let name: Arc<str> = Arc::from(principal);
        self.running.insert(Arc::clone(&name), 1);
        name
    }

    /// Counts a query of `principal` as ended.
    fn finish(&mut self, principal: &str) {
        self.executing -= 1;
        if let Some(n) = self.running.get_mut(principal) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(principal);
            }
        }
    }
}

/// A query's place in the queue; leaving it (timeout, or the request dropped) takes the query
/// out, and hands on a slot granted meanwhile.
struct Waiting<'a> {
    admission: &'a Arc<Admission>,
    principal: &'a str,
    id: u64,
    granted: oneshot::Receiver<()>,
    done: bool,
}

impl Waiting<'_> {
    /// Takes the query out of its queue; false when it was no longer there (granted).
    fn withdraw(&mut self) -> bool {
        let mut state = self.admission.lock();
        let Some(queue) = state.queues.get_mut(self.principal) else {
            return false;
        };
        let Some(at) = queue.iter().position(|w| w.id == self.id) else {
            return false;
        };
        queue.remove(at);
        if queue.is_empty() {
            state.queues.remove(self.principal);
            state.turns.retain(|p| &**p != self.principal);
        }
        state.waiting -= 1;
        true
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The request was dropped while waiting.
        if !self.withdraw() && self.granted.try_recv().is_ok() {
            self.admission.release(self.principal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_executing: usize, max_queued: usize, timeout: Duration) -> Arc<Admission> {
        Admission::new(AdmissionConfig {
            max_executing,
            // No cap unless a test sets one.
            max_per_principal: max_executing,
            max_queued,
            queue_timeout: timeout,
        })
    }

    const LONG: Duration = Duration::from_secs(3600);

    /// Spawns an admission for `principal` that reports its order of grant through `order`.
    fn enqueue(
        a: &Arc<Admission>,
        principal: &'static str,
        order: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<Result<Permit, Refusal>> {
        let (a, order) = (Arc::clone(a), Arc::clone(order));
        tokio::spawn(async move {
            let permit = a.admit(principal).await?;
            order.lock().unwrap().push(principal);
            Ok(permit)
        })
    }

    /// Lets spawned tasks run until `a` has `n` queries waiting.
    async fn until_waiting(a: &Admission, n: usize) {
        while a.waiting() != n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn queries_past_the_slots_wait_and_run_as_slots_free() {
        let a = admission(2, 10, LONG);
        let first = a.admit("p").await.unwrap();
        let second = a.admit("p").await.unwrap();
        assert_eq!(a.executing(), 2);
        let order = Arc::new(Mutex::new(Vec::new()));
        let third = enqueue(&a, "p", &order);
        until_waiting(&a, 1).await;
        assert!(order.lock().unwrap().is_empty(), "no slot is free yet");
        drop(first);
        let third = third.await.unwrap().unwrap();
        assert_eq!((a.executing(), a.waiting()), (2, 0));
        drop((second, third));
        assert_eq!(a.executing(), 0);
        assert_eq!(a.stats().admitted.load(Ordering::Relaxed), 3);
        assert_eq!(a.stats().queued.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let a = admission(1, 1, LONG);
        let _running = a.admit("p").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let _queued = enqueue(&a, "p", &order);
        until_waiting(&a, 1).await;
        assert_eq!(a.admit("q").await.unwrap_err(), Refusal::QueueFull);
        assert_eq!(a.stats().queue_full.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_queue_timeout_is_refused_and_leaves_the_queue() {
        let a = admission(1, 4, Duration::from_secs(5));
        let running = a.admit("p").await.unwrap();
        // Paused time: the timeout elapses as soon as every task is idle.
        assert_eq!(a.admit("q").await.unwrap_err(), Refusal::QueueTimeout);
        assert_eq!(a.waiting(), 0);
        assert_eq!(a.stats().queue_timeout.load(Ordering::Relaxed), 1);
        drop(running);
        assert_eq!(
            a.executing(),
            0,
            "the slot is not handed to the query that left"
        );
        let _next = a.admit("q").await.unwrap();
    }

    #[tokio::test]
    async fn a_request_dropped_while_waiting_gives_up_its_place() {
        let a = admission(1, 4, LONG);
        let running = a.admit("p").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let gone = enqueue(&a, "gone", &order);
        until_waiting(&a, 1).await;
        let next = enqueue(&a, "next", &order);
        until_waiting(&a, 2).await;
        gone.abort();
        until_waiting(&a, 1).await;
        drop(running);
        let _next = next.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["next"]);
        assert_eq!(a.executing(), 1);
    }

    #[tokio::test]
    async fn principals_take_turns_so_a_bulk_extract_does_not_starve_the_dashboard() {
        let a = admission(1, 100, LONG);
        let running = a.admit("extract").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Each query finishes as soon as it is admitted, handing its slot on.
        let run = |principal: &'static str| {
            let (a, order) = (Arc::clone(&a), Arc::clone(&order));
            tokio::spawn(async move {
                let _permit = a.admit(principal).await.unwrap();
                order.lock().unwrap().push(principal);
            })
        };
        let mut handles = Vec::new();
        for principal in ["extract"; 5].into_iter().chain(["dashboard"; 2]) {
            handles.push(run(principal));
            until_waiting(&a, handles.len()).await;
        }
        drop(running);
        for h in handles {
            h.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(
            order,
            [
                "extract",
                "dashboard",
                "extract",
                "dashboard",
                "extract",
                "extract",
                "extract"
            ]
        );
    }

    #[tokio::test]
    async fn one_principal_never_holds_every_slot() {
        let a = Admission::new(AdmissionConfig {
            max_executing: 3,
            max_per_principal: 2,
            max_queued: 10,
            queue_timeout: LONG,
        });
        let first = a.admit("extract").await.unwrap();
        let _second = a.admit("extract").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        // A slot is free, but not for the extract's third query.
        let third = enqueue(&a, "extract", &order);
        until_waiting(&a, 1).await;
        assert_eq!(a.executing(), 2);
        // The dashboard gets it at once.
        let dashboard = a.admit("dashboard").await.unwrap();
        assert_eq!((a.executing(), a.waiting()), (3, 1));
        // A slot freed by the dashboard stays free: the extract is at its cap.
        drop(dashboard);
        assert_eq!((a.executing(), a.waiting()), (2, 1));
        // One of the extract's own ends: its third runs.
        drop(first);
        let _third = third.await.unwrap().unwrap();
        assert_eq!((a.executing(), a.waiting()), (2, 0));
    }

    #[test]
    fn defaults_follow_the_cores_and_the_memory_pool() {
        let c = AdmissionConfig::for_machine(2, 2 << 30);
        assert_eq!(
            (c.max_executing, c.max_per_principal, c.max_queued),
            (4, 3, 128)
        );
        assert_eq!(AdmissionConfig::per_principal(1), 1);
        // A small pool lowers the slots so that each share stays usable.
        assert_eq!(AdmissionConfig::for_machine(16, 256 << 20).max_executing, 2);
        assert_eq!(AdmissionConfig::for_machine(0, 0).max_executing, 1);
    }
}
