//! Orchestration: landing → bronze → silver in one resumable, exactly-once run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use tokio::sync::mpsc::Sender;
use tokio::task::{JoinError, JoinHandle};

mod writer;

pub(crate) use writer::Writer;

use crate::bronze::BronzeChunk;
use crate::concurrency::at_most;
use crate::error::{Error, Result};
use crate::gold::{GoldMetrics, GoldRefresh};
use crate::quality::QualityRun;
use crate::reference::ReferenceData;
use crate::silver::{Counts, Outputs};
use crate::source::landing::{LandingFile, LineReader, discover};
use crate::storage::TableRoot;

/// Landing files whose bronze position is looked up at once.
const POSITION_LOOKUPS: usize = 8;

/// Progress of a running ingest, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Bytes of landing files to read in this run.
    pub bytes_total: u64,
    /// Bytes read so far.
    pub bytes_done: u64,
    /// Records landed in bronze so far.
    pub records: u64,
}

/// Callback that receives [`Progress`] after each committed batch.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What an ingest run did.
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Landing files found.
    pub files: usize,
    /// Files with nothing new to read.
    pub files_unchanged: usize,
    /// Bytes read from landing files.
    pub bytes_read: u64,
    /// Bronze batches committed by this run.
    pub bronze_batches: u64,
    /// Bronze batches refined into silver that an earlier, interrupted run had left.
    pub recovered_batches: u64,
    /// Silver counts for everything refined in this run.
    pub counts: Counts,
    /// The quality run id these counts were recorded under.
    pub run_id: String,
    /// The gold refresh that followed, if one was asked for.
    pub gold: Option<GoldMetrics>,
    /// Wall time of landing and refinement (the gold refresh reports its own).
    pub elapsed: Duration,
}

/// Lands a file or folder of NDJSON records into bronze and refines them into silver.
///
/// ```
/// # async fn demo() -> patientflow_ingest::Result<()> {
/// use patientflow_ingest::{Ingest, TableRoot};
/// let root = TableRoot::parse("/tmp/patientflow-doc/data")?;
/// let landing = std::path::Path::new("/tmp/patientflow-doc/landing");
/// std::fs::create_dir_all(landing).ok();
/// let metrics = Ingest::new(root, landing).run().await?;
/// assert_eq!(
///     metrics.counts.records_in,
///     metrics.counts.silver_rows + metrics.counts.quarantined + metrics.counts.duplicates
/// );
/// # Ok(()) }
/// ```
pub struct Ingest {
    root: TableRoot,
    from: PathBuf,
    reference: Option<ReferenceData>,
    tz: Tz,
    batch_records: usize,
    batch_bytes: usize,
    progress: Option<ProgressFn>,
    gold: Option<GoldRefresh>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("root", &self.root)
            .field("from", &self.from)
            .field("tz", &self.tz)
            .field("batch_records", &self.batch_records)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Records per bronze batch by default.
    pub const DEFAULT_BATCH_RECORDS: usize = 65_536;
    /// Raw bytes per bronze batch by default.
    pub const DEFAULT_BATCH_BYTES: usize = 96 * 1024 * 1024;

    /// An ingest of `from` (a landing folder or one file) into the tables under `root`.
    pub fn new(root: TableRoot, from: impl Into<PathBuf>) -> Self {
        Self {
            root,
            from: from.into(),
            reference: None,
            tz: Tz::UTC,
            batch_records: Self::DEFAULT_BATCH_RECORDS,
            batch_bytes: Self::DEFAULT_BATCH_BYTES,
            progress: None,
            gold: None,
        }
    }

    /// Department reference data for normalisation (default: the shipped reference network
    /// and the department batches in silver).
    pub fn with_reference(mut self, reference: ReferenceData) -> Self {
        self.reference = Some(reference);
        self
    }

    /// Time zone of timestamps that carry no offset (default UTC).
    pub fn with_source_timezone(mut self, tz: Tz) -> Self {
        self.tz = tz;
        self
    }

    /// Records per bronze batch (and per silver commit).
    pub fn with_batch_records(mut self, n: usize) -> Self {
        self.batch_records = n.max(1);
        self
    }

    /// Receives progress after each batch.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Refreshes gold after silver, under the same writer lock.
    pub fn with_gold(mut self, refresh: GoldRefresh) -> Self {
        self.gold = Some(refresh);
        self
    }

    /// Runs the ingest to completion.
    pub async fn run(self) -> Result<IngestMetrics> {
        let started = Instant::now();
        let files = discover(&self.from)?;
        let _lock = self.root.lock_writer()?;
        let reference = match self.reference {
            Some(r) => r,
            None => crate::batch::departments_reference(&self.root).await?,
        };
        let mut writer = Writer::open(&self.root, reference, self.tz).await?;
        let run = QualityRun::start();
        let mut metrics = IngestMetrics {
            files: files.len(),
            run_id: run.run_id.clone(),
            counts: Counts::for_rules(crate::silver::RULES.len()),
            ..IngestMetrics::default()
        };
        // Finish what an interrupted run left in bronze but not in silver.
        metrics.recovered_batches = writer.recover(&run, &mut metrics.counts).await?;

        // Each file's position in bronze, a few at a time: a lookup reads the log's
        // transactions (about 1 ms), and a landing folder keeps every file it ever received.
        let ids: Vec<String> = files.iter().map(LandingFile::app_id).collect();
        let lookups = ids.iter().map(|id| writer.bronze.position(id)).collect();
        let positions: Vec<Option<i64>> = at_most(POSITION_LOOKUPS, lookups).await?;
        let mut pending: Vec<(LandingFile, u64)> = Vec::new();
        for (file, pos) in files.into_iter().zip(positions) {
            let pos = pos.unwrap_or(0).max(0) as u64;
            if pos >= file.len {
                tracing::debug!(file = %file.path.display(), "nothing new");
                metrics.files_unchanged += 1;
            } else {
                pending.push((file, pos));
            }
        }
        let mut progress = Progress {
            bytes_total: pending.iter().map(|(f, p)| f.len - p).sum(),
            ..Progress::default()
        };
        // A thread of its own reads the files into chunks while the previous chunk is landed
        // and refined.
        let (tx, mut chunks) = tokio::sync::mpsc::channel(1);
        let limits = (self.batch_records, self.batch_bytes);
        std::thread::spawn(move || read_chunks(pending, limits, &tx));
        let mut stage = Stage {
            writer: &mut writer,
            committing: None,
            run: &run,
            metrics: &mut metrics,
        };
        while let Some(read) = chunks.recv().await {
            let (chunk, bytes) = read?;
            progress.bytes_done += bytes;
            progress.records += chunk.len() as u64;
            stage.flush(chunk).await?;
            if let Some(p) = &self.progress {
                p(progress);
            }
        }
        stage.settle().await?;
        if let Some(p) = &self.progress {
            p(progress);
        }
        metrics.bytes_read = progress.bytes_done;
        metrics.elapsed = started.elapsed();
        if let Some(refresh) = self.gold {
            metrics.gold = Some(refresh.run_locked().await?);
        }
        metrics.counts.ensure_balanced()?;
        Ok(metrics)
    }
}

/// A chunk read from the landing files, with the number of landing bytes it covers.
type Read = Result<(BronzeChunk, u64)>;

/// Reads `pending` files (each from its consumed position) into chunks of at most `limits`
/// (records, bytes) and sends them, an error ending the stream. Stops when nobody listens.
fn read_chunks(pending: Vec<(LandingFile, u64)>, limits: (usize, usize), tx: &Sender<Read>) {
    if let Err(e) = read_into(pending, limits, tx) {
        // The receiver is gone only when the ingest already failed.
        let _ = tx.blocking_send(Err(e));
    }
}

fn read_into(
    pending: Vec<(LandingFile, u64)>,
    limits: (usize, usize),
    tx: &Sender<Read>,
) -> Result<()> {
    let mut chunk = BronzeChunk::new();
    let mut line = Vec::new();
    let mut bytes = 0;
    for (file, pos) in pending {
        let app_id = file.app_id();
        let source = file.path.display().to_string();
        let mut reader = LineReader::open(&file, pos)?;
        let mut received_at = chrono::Utc::now().timestamp_micros();
        let mut last_offset = reader.offset;
        tracing::info!(file = %source, from_byte = pos, "reading");
        while let Some(n) = reader.next_into(&mut line)? {
            chunk.push(&source, None, n, received_at, &line);
            if chunk.len() >= limits.0 || chunk.bytes() >= limits.1 {
                chunk.set_position(&app_id, reader.offset as i64);
                bytes += reader.offset - last_offset;
                last_offset = reader.offset;
                let next = BronzeChunk::with_capacity(chunk.len(), chunk.bytes());
                let full = std::mem::replace(&mut chunk, next);
                if tx
                    .blocking_send(Ok((full, std::mem::take(&mut bytes))))
                    .is_err()
                {
                    return Ok(());
                }
                received_at = chrono::Utc::now().timestamp_micros();
            }
        }
        chunk.set_position(&app_id, reader.offset as i64);
        bytes += reader.offset - last_offset;
    }
    if chunk.has_positions() {
        let _ = tx.blocking_send(Ok((chunk, bytes)));
    }
    Ok(())
}

/// The bronze → silver hand-off of one run, pipelined over the cores: while batch `n` is
/// written to bronze (on a task) it is refined (here), and batch `n - 1` is still being
/// committed to silver (on another task). Silver commits batch `n` only after bronze holds it,
/// so a crash at any instant leaves silver at or behind bronze, never ahead.
struct Stage<'a> {
    writer: &'a mut Writer,
    /// The silver commit in flight, which hands the outputs back.
    committing: Option<JoinHandle<Result<(Outputs, Counts)>>>,
    run: &'a QualityRun,
    metrics: &'a mut IngestMetrics,
}

impl Stage<'_> {
    async fn flush(&mut self, chunk: BronzeChunk) -> Result<()> {
        let landing = self.writer.bronze.prepare(chunk)?;
        let writing = tokio::spawn(self.writer.bronze.write(&landing));
        let refined = self
            .writer
            .refiner
            .refine(landing.seq, &landing.batch, self.run)?;
        self.writer.bronze.landed(joined(writing.await)?, &landing);
        self.metrics.bronze_batches += 1;
        let outputs = self.settle().await?;
        self.committing = Some(tokio::spawn(outputs.commit(refined)));
        Ok(())
    }

    /// Waits for the silver commit in flight, counts it, and returns the outputs.
    async fn settle(&mut self) -> Result<Outputs> {
        let Some(committing) = self.committing.take() else {
            return self
                .writer
                .outputs
                .take()
                .ok_or_else(|| Error::Internal("silver outputs lost".into()));
        };
        let (outputs, counts) = joined(committing.await)?;
        tracing::debug!(
            records = counts.records_in,
            silver = counts.silver_rows,
            quarantined = counts.quarantined,
            duplicates = counts.duplicates,
            "batch committed"
        );
        self.metrics.counts.add(&counts);
        Ok(outputs)
    }
}

/// The result of a finished task; a task that panicked is an internal error.
fn joined<T>(result: std::result::Result<Result<T>, JoinError>) -> Result<T> {
    result.map_err(|e| Error::Internal(format!("a write task failed: {e}")))?
}
