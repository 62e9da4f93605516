//! Streaming ingest: a followed source ([`Follow`]) in micro-batches, each landed in bronze,
//! refined into silver and refreshed into gold, in order.
//!
//! The source is polled on a thread of its own (librdkafka's rebalance callbacks run inside
//! its poll). A batch is cut after `interval` since its first record or at `max_records`;
//! while one batch lands the next one fills, past its interval if the landing takes longer
//! (a busy stream takes larger batches), and once that one holds `max_records` the source is
//! paused (no unbounded buffering). A batch is settled with the source once it is in bronze
//! and silver (the Delta log holds its position); gold then refreshes it on a task of its own
//! while the next batch lands, one refresh at a time. A landed batch's records also go into
//! gold's patient history index before the refresh of the batch before ends, so that the
//! refresh of this one starts with its patients' histories at hand. The root's writer lock is
//! held while a batch lands or refreshes and released when neither does, so batches, one-shot
//! ingests, gold refreshes and maintenance can take turns, and several consumers of one group
//! can write to one root: each landing first catches up with what the others committed and
//! keeps only the parts the Delta log does not hold yet. Every few batches one landing table's small
//! files are merged, so a stream does not slow down by the hour (`merges.rs`).

mod merges;
mod pump;
mod status;
mod visible;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono_tz::Tz;

pub use status::{FRESHNESS_BUCKETS, Histogram, StreamSnapshot, StreamStatus};

use crate::bronze::BronzeChunk;
use crate::error::{Error, Result};
use crate::gold::GoldRefresh;
use crate::pipeline::Writer;
use crate::quality::QualityRun;
use crate::reference::ReferenceData;
use crate::silver::{self, Counts};
use crate::source::{Follow, Ownership, Part, Settled};
use crate::storage::CHECKPOINT_EVERY;
use crate::storage::TableRoot;
use merges::Rotation;
use status::seconds_between;
use visible::{InFlight, Landed};

/// Asks a running stream to finish the batch in hand and stop.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Stops the stream after the batch in hand is committed.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a stream did until it stopped.
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics {
    /// Micro-batches committed.
    pub batches: u64,
    /// Silver counts over all of them.
    pub counts: Counts,
    /// Bronze batches an interrupted run had left, refined at the start.
    pub recovered_batches: u64,
    /// The quality run id the batches were recorded under.
    pub run_id: String,
}

/// The committer's ends of the channels to the pump.
struct Batches {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<Part>>>,
    settle: std::sync::mpsc::Sender<Vec<Settled>>,
}

/// A streaming ingest into the tables under a root.
#[derive(Debug)]
pub struct Stream {
    root: TableRoot,
    reference: Option<ReferenceData>,
    tz: Tz,
    interval: Duration,
    max_records: usize,
    idle_refresh: Duration,
    gold: Option<GoldRefresh>,
    status: Arc<StreamStatus>,
    stop: StopHandle,
}

impl Stream {
    /// Time after a batch's first record when it is cut, by default.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);
    /// Records at which a batch is cut, by default.
    pub const DEFAULT_MAX_RECORDS: usize = 50_000;
    /// With nothing arriving, gold is refreshed this often so the census follows the clock.
    pub const DEFAULT_IDLE_REFRESH: Duration = Duration::from_secs(60);

    /// A stream into the tables under `root`.
    pub fn new(root: TableRoot) -> Self {
        Self {
            root,
            reference: None,
            tz: Tz::UTC,
            interval: Self::DEFAULT_INTERVAL,
            max_records: Self::DEFAULT_MAX_RECORDS,
            idle_refresh: Self::DEFAULT_IDLE_REFRESH,
            gold: None,
            status: Arc::default(),
            stop: StopHandle::default(),
        }
    }

    /// Department reference data for normalisation (default: silver's department batches).
    pub fn with_reference(mut self, reference: ReferenceData) -> Self {
        self.reference = Some(reference);
        self
    }

    /// Time zone of timestamps that carry no offset (default UTC).
    pub fn with_source_timezone(mut self, tz: Tz) -> Self {
        self.tz = tz;
        self
    }

    /// Cuts a batch this long after its first record (default 500 ms).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Cuts a batch at this many records (default 50,000).
    pub fn with_max_records(mut self, n: usize) -> Self {
        self.max_records = n.max(1);
        self
    }

    /// Refreshes gold after every batch (and every `idle_refresh` without one), keeping the
    /// patient history index open between refreshes.
    pub fn with_gold(mut self, refresh: GoldRefresh) -> Self {
        self.gold = Some(refresh.keeping_open());
        self
    }

    /// Refreshes gold this often while nothing arrives (default 60 s).
    pub fn with_idle_refresh(mut self, every: Duration) -> Self {
        self.idle_refresh = every.max(Duration::from_millis(100));
        self
    }

    /// The stream's live counters.
    pub fn status(&self) -> Arc<StreamStatus> {
        self.status.clone()
    }

    /// Counts into `status` (one a restarted stream carries on) instead of a new one.
    pub fn with_status(mut self, status: Arc<StreamStatus>) -> Self {
        self.status = status;
        self
    }

    /// A handle that stops the stream.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Follows `source` until stopped (or until it fails).
    pub async fn run(self, source: Box<dyn Follow>) -> Result<StreamMetrics> {
        let ownership = source.ownership();
        let (batches, rx) = tokio::sync::mpsc::channel(1);
        let (settle, settled) = std::sync::mpsc::channel();
        let pump = pump::Pump {
            source,
            batches,
            settled,
            stop: self.stop.clone(),
            interval: self.interval,
            max_records: self.max_records,
            status: self.status.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("patientflow-source".into())
            .spawn(move || pump.run())
            .map_err(|e| Error::Internal(format!("cannot start the source thread: {e}")))?;

        let run = QualityRun::start();
        let mut metrics = StreamMetrics {
            run_id: run.run_id.clone(),
            counts: Counts::for_rules(silver::RULES.len()),
            ..StreamMetrics::default()
        };
        let mut writer: Option<Writer> = None;
        let mut batches = Batches { rx, settle };
        // Tables opened and gold brought up to date while the source connects, so the first
        // batch costs what any other does.
        let result = match self.warm_up(&mut writer, &run, &mut metrics).await {
            Ok(()) => {
                self.consume(&mut batches, &mut writer, &ownership, &run, &mut metrics)
                    .await
            }
            Err(e) => Err(e),
        };
        self.stop.stop();
        // The pump stops once it cannot hand over or settle a batch any more.
        drop(batches);
        if thread.join().is_err() {
            return Err(Error::Internal("the source thread panicked".into()));
        }
        result?;
        metrics.counts.ensure_balanced()?;
        Ok(metrics)
    }

    /// Commits the pump's batches until it stops or a batch fails, refreshing gold when
    /// nothing arrives for `idle_refresh`. Gold refreshes a batch while the next one lands; the
    /// last one is visible before this returns. Dropping `batches` afterwards tells the pump to
    /// stop.
    async fn consume(
        &self,
        batches: &mut Batches,
        writer: &mut Option<Writer>,
        ownership: &Ownership,
        run: &QualityRun,
        metrics: &mut StreamMetrics,
    ) -> Result<()> {
        enum Next {
            Visible(Result<()>),
            Batch(std::result::Result<Option<Result<Vec<Part>>>, tokio::time::error::Elapsed>),
        }
        let mut gold: Option<InFlight> = None;
        let mut merges = Rotation::default();
        let result: Result<()> = async {
            loop {
                let next = tokio::select! {
                    biased;
                    done = InFlight::wait(&mut gold) => Next::Visible(done),
                    received = tokio::time::timeout(self.idle_refresh, batches.rx.recv()) => {
                        Next::Batch(received)
                    }
                };
                let next = match next {
                    Next::Visible(done) => {
                        // Its writer lock goes with it, unless the next batch's landing holds it.
                        gold = None;
                        done?;
                        continue;
                    }
                    Next::Batch(Err(_)) => {
                        if let Some(g) = gold.take() {
                            g.finish().await?;
                        }
                        self.idle_gold().await?;
                        continue;
                    }
                    Next::Batch(Ok(None)) => return Ok(()),
                    Next::Batch(Ok(Some(next))) => next?,
                };
                let started = Instant::now();
                let lock = match &gold {
                    Some(g) => g.lock.clone(),
                    None => Arc::new(self.root.wait_for_writer().await?),
                };
                let (landed, settled) = self
                    .land(started, writer, ownership, next, run, metrics)
                    .await?;
                // The pump is gone only if it failed; its error comes next.
                let _ = batches.settle.send(settled);
                match &self.gold {
                    Some(refresh) => {
                        // The next refresh's first step, taken while gold refreshes the batch
                        // before: it only saves that refresh work, which it does if this fails.
                        if let Err(e) = refresh.catch_up_index().await {
                            tracing::warn!(error = %e, "the patient history index was not caught up ahead of gold");
                        }
                        if let Some(previous) = gold.take() {
                            previous.finish().await?;
                        }
                        let status = self.status.clone();
                        gold = Some(InFlight::start(refresh, lock.clone(), landed, status));
                    }
                    None => landed.visible(&self.status, Duration::ZERO),
                }
                // While gold refreshes the batch, now and then a landing table's small files
                // are merged (under the lock, which the refresh shares).
                if let (Some(name), Some(w)) = (merges.after_batch(), writer.as_mut()) {
                    merges::merge(w, &self.root, name).await;
                }
                drop(lock);
            }
        }
        .await;
        // The batch in hand becomes visible, also when a later one failed to land.
        let finished = match gold {
            Some(g) => g.finish().await,
            None => Ok(()),
        };
        result.and(finished)
    }

    /// Lands one batch in bronze and silver (the caller holds the writer lock, taken from
    /// `started`): the parts the log lacks. Returns the batch, for gold, and how each part
    /// settled.
    async fn land(
        &self,
        started: Instant,
        writer: &mut Option<Writer>,
        ownership: &Ownership,
        parts: Vec<Part>,
        run: &QualityRun,
        metrics: &mut StreamMetrics,
    ) -> Result<(Landed, Vec<Settled>)> {
        let w = self.writer(writer, run, metrics).await?;
        let mut chunk = BronzeChunk::new();
        let mut settled = Vec::with_capacity(parts.len());
        let (mut stamps, mut delivery) = (Vec::new(), Vec::new());
        let mut refused = 0;
        let counts = {
            // Held until the batch is in silver: a consumer losing partitions waits for it.
            let owned = ownership.lock().await;
            for part in &parts {
                let logged = w.bronze.position(&part.app_id).await?;
                let owns = owned.as_ref().is_none_or(|ids| ids.contains(&part.app_id));
                if !(owns && part.is_new(logged)) {
                    tracing::info!(
                        part = %part.app_id,
                        ?logged,
                        owns,
                        "part already consumed or no longer ours; not committed"
                    );
                    refused += 1;
                    settled.push(Settled {
                        app_id: part.app_id.clone(),
                        partition: part.partition,
                        committed: false,
                        logged,
                    });
                    continue;
                }
                for r in &part.records {
                    chunk.push(&part.source, part.partition, r.line, r.received_at, &r.raw);
                    stamps.push(r.produced_at.unwrap_or(r.received_at));
                    delivery.extend(r.produced_at.map(|p| seconds_between(p, r.received_at)));
                }
                chunk.set_position(&part.app_id, part.position);
                settled.push(Settled {
                    app_id: part.app_id.clone(),
                    partition: part.partition,
                    committed: true,
                    logged: Some(part.position),
                });
            }
            if chunk.has_positions() {
                w.land(chunk, run).await?
            } else {
                Counts::for_rules(silver::RULES.len())
            }
        };
        metrics.batches += 1;
        metrics.counts.add(&counts);
        let landed = Landed {
            started,
            landing: started.elapsed(),
            counts,
            refused,
            stamps,
            delivery,
        };
        Ok((landed, settled))
    }

    /// The writer, opened (refining what an interrupted run left in bronze) or caught up
    /// with what other writers committed. Called under the root's writer lock.
    async fn writer<'w>(
        &self,
        writer: &'w mut Option<Writer>,
        run: &QualityRun,
        metrics: &mut StreamMetrics,
    ) -> Result<&'w mut Writer> {
        Ok(match writer {
            Some(w) => {
                metrics.recovered_batches +=
                    w.catch_up(&self.root, run, &mut metrics.counts).await?;
                w
            }
            None => {
                let reference = match &self.reference {
                    Some(r) => r.clone(),
                    None => crate::batch::departments_reference(&self.root).await?,
                };
                let w = writer.insert(Writer::open(&self.root, reference, self.tz).await?);
                metrics.recovered_batches = w.recover(run, &mut metrics.counts).await?;
                w
            }
        })
    }

    /// Opens the writer and refreshes gold once, before the first batch.
    async fn warm_up(
        &self,
        writer: &mut Option<Writer>,
        run: &QualityRun,
        metrics: &mut StreamMetrics,
    ) -> Result<()> {
        let _lock = self.root.wait_for_writer().await?;
        self.writer(writer, run, metrics).await?;
        if let Some(refresh) = &self.gold {
            refresh.clone().run_locked().await?;
        }
        let rare = crate::maintenance::rarely_checkpointed(&self.root).await?;
        if !rare.is_empty() {
            tracing::warn!(
                tables = rare.join(", "),
                "these tables checkpoint less often than every {CHECKPOINT_EVERY} commits, so \
                 every batch replays their log further (more memory and CPU); run `patientflow \
                 maintain` once to set their interval"
            );
        }
        Ok(())
    }

    /// With nothing arriving, moves gold's census to the current hour.
    async fn idle_gold(&self) -> Result<()> {
        if let Some(refresh) = &self.gold {
            let _lock = self.root.wait_for_writer().await?;
            refresh.clone().run_locked().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
