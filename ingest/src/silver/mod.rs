//! Silver: typed, normalised, deduplicated records and the quarantine (contract §2–§3).
//!
//! Silver is a pure function of bronze. Each bronze batch (by its sequence number) is refined
//! once; the three outputs — `silver/patient_events`, `silver/quarantine` and
//! `ops/quality_runs` — each record the sequence they hold as a Delta application
//! transaction, so after a crash every table catches up from exactly where it stopped.

pub(crate) mod json;
mod keys;
#[cfg(test)]
mod properties;
pub(crate) mod record;
pub(crate) mod refine;
pub mod rules;
mod seen;
pub(crate) mod time;

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono_tz::Tz;
use deltalake::DeltaTable;
use deltalake::arrow::array::{BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::compute::concat_batches;
use deltalake::datafusion::prelude::{Expr, col, lit};
use deltalake::kernel::Transaction;

pub use refine::Counts;
pub use rules::{Applies, Outcome, RULES, Rule, rules_markdown};

use self::keys::KeyIndex;
use self::seen::Seen;
use crate::error::{Error, Result};
use crate::quality::{EVENTS_DATASET, QualityRun};
use crate::reference::ReferenceData;
use crate::storage::{TableRoot, append, column, scan, txn_version};
use crate::tables::{
    QUALITY_RUNS, QUARANTINE, SILVER_APP, SILVER_EVENTS, SILVER_EVENTS_AS_OF_APP, SILVER_SCHEMA,
};

/// An output table and the last bronze sequence (of one bronze table, named by `app`) it
/// holds.
#[derive(Debug)]
pub(crate) struct Output {
    name: &'static str,
    app: &'static str,
    pub(crate) table: DeltaTable,
    pub(crate) done: i64,
}

impl Output {
    pub(crate) async fn open(
        root: &TableRoot,
        name: &'static str,
        app: &'static str,
    ) -> Result<Self> {
        let table = root.open(name).await?;
        let done = txn_version(&table, name, app).await?.unwrap_or(0);
        Ok(Self {
            name,
            app,
            table,
            done,
        })
    }

    /// Appends `batch` for bronze sequence `seq` unless this table already holds it, with
    /// `also` (another application transaction) in the same commit.
    pub(crate) async fn commit(
        &mut self,
        seq: i64,
        batch: RecordBatch,
        also: Option<Transaction>,
    ) -> Result<()> {
        if self.done >= seq {
            return Ok(());
        }
        let txn = [Transaction::new(self.app, seq)]
            .into_iter()
            .chain(also)
            .collect();
        self.table = append(self.table.clone(), self.name, vec![batch], txn, &[]).await?;
        self.done = seq;
        Ok(())
    }
}

/// A set of duplicate keys. The keys are already 128-bit hashes, so the set hashes them by
/// taking their low bits instead of running SipHash again.
pub(crate) type KeySet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// Hasher for [`KeySet`]: the low 64 bits of a key that is itself a hash.
#[derive(Debug, Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

/// The three tables a refined bronze batch goes to. Committing takes them by value so the
/// commit can run on a task of its own while the next batch is landed and refined.
#[derive(Debug)]
pub(crate) struct Outputs {
    events: Output,
    /// The newest event time `events` recorded ([`SILVER_EVENTS_AS_OF_APP`]).
    newest_event: Option<i64>,
    quarantine: Output,
    quality: Output,
    /// Silver's dedupe keys on disk, brought up to each commit.
    index: Option<Arc<KeyIndex>>,
}

impl Outputs {
    async fn open(root: &TableRoot) -> Result<Self> {
        let events = Output::open(root, SILVER_EVENTS, SILVER_APP).await?;
        let newest_event =
            txn_version(&events.table, SILVER_EVENTS, SILVER_EVENTS_AS_OF_APP).await?;
        Ok(Self {
            events,
            newest_event,
            quarantine: Output::open(root, QUARANTINE, SILVER_APP).await?,
            quality: Output::open(root, QUALITY_RUNS, SILVER_APP).await?,
            index: None,
        })
    }

    /// The output table `name`, if it is one of the three.
    pub(crate) fn table_mut(&mut self, name: &str) -> Option<&mut DeltaTable> {
        [&mut self.events, &mut self.quarantine, &mut self.quality]
            .into_iter()
            .find(|o| o.name == name)
            .map(|o| &mut o.table)
    }

    /// The last bronze sequence that every output holds.
    pub(crate) fn done(&self) -> i64 {
        self.events
            .done
            .min(self.quarantine.done)
            .min(self.quality.done)
    }

    /// Commits a refined batch to every output that lacks it; returns the outputs and the
    /// batch's counts.
    pub(crate) async fn commit(mut self, batch: SilverBatch) -> Result<(Self, Counts)> {
        // The three tables commit concurrently; each records the bronze sequence it holds, so
        // after a crash at any point every table that lacks this batch gets it exactly once.
        let (events_before, silver) = (self.events.done, batch.silver);
        // The newest event time so far, recorded with the records that brought it.
        self.newest_event = self.newest_event.max(newest_event(&silver)?);
        let newest = self
            .newest_event
            .map(|t| Transaction::new(SILVER_EVENTS_AS_OF_APP, t));
        futures::try_join!(
            self.quality.commit(batch.seq, batch.quality, None),
            self.events.commit(batch.seq, silver.clone(), newest),
            self.quarantine.commit(batch.seq, batch.quarantine, None),
        )?;
        if let Some(index) = &self.index {
            index
                .committed(&self.events.table, events_before, batch.seq, &silver)
                .await?;
        }
        Ok((self, batch.counts))
    }
}

/// The newest event time among the records of a silver batch that silver did not correct: an
/// ADT event's time, a flat record's admission.
fn newest_event(batch: &RecordBatch) -> Result<Option<i64>> {
    let corrected = column::<BooleanArray>(batch, SILVER_EVENTS, "admission_time_corrected")?;
    let mut newest = None;
    for name in ["event_time", "admission_time"] {
        let times = column::<TimestampMicrosecondArray>(batch, SILVER_EVENTS, name)?;
        let kept = times
            .iter()
            .zip(corrected.iter())
            .filter_map(|(t, c)| t.filter(|_| c == Some(false)))
            .max();
        newest = newest.max(kept);
    }
    Ok(newest)
}

/// One refined bronze batch, ready to commit.
#[derive(Debug)]
pub(crate) struct SilverBatch {
    seq: i64,
    silver: RecordBatch,
    quarantine: RecordBatch,
    quality: RecordBatch,
    counts: Counts,
}

/// What refinement needs besides the batch: reference data, the duplicate keys already in
/// silver and the attribute columns silver has.
#[derive(Debug)]
pub(crate) struct Refiner {
    reference: ReferenceData,
    tz: Tz,
    ctx: rules::Context,
    extra_columns: Vec<String>,
}

impl Refiner {
    /// Refines bronze batch `seq` (CPU only; parsing runs on every core).
    pub(crate) fn refine(
        &mut self,
        seq: i64,
        bronze: &RecordBatch,
        run: &QualityRun,
    ) -> Result<SilverBatch> {
        let refined = refine::refine(
            bronze,
            &self.reference,
            self.tz,
            &mut self.ctx,
            &mut self.extra_columns,
        )?;
        self.ctx.seen.end(seq);
        let quality = run.batch(
            EVENTS_DATASET,
            seq,
            &refined.counts,
            RULES.iter().map(|r| r.name),
        )?;
        Ok(SilverBatch {
            seq,
            silver: refined.silver,
            quarantine: refined.quarantine,
            quality,
            counts: refined.counts,
        })
    }
}

/// Opens silver's outputs and a refiner holding the dedupe keys of everything silver holds.
pub(crate) async fn open(
    root: &TableRoot,
    reference: ReferenceData,
    tz: Tz,
) -> Result<(Refiner, Outputs)> {
    let mut outputs = Outputs::open(root).await?;
    let table = &outputs.events.table;
    let seen = Seen::open(root, table, outputs.done()).await?;
    outputs.index = seen.index();
    let refiner = Refiner {
        reference,
        tz,
        ctx: rules::Context {
            received_at: 0,
            seen,
        },
        extra_columns: extra_columns(table)?,
    };
    Ok((refiner, outputs))
}

/// Re-opens the outputs after another writer committed to them, adding the dedupe keys and
/// attribute columns of what it committed to `refiner`.
pub(crate) async fn catch_up(
    root: &TableRoot,
    refiner: &mut Refiner,
    outputs: Outputs,
) -> Result<Outputs> {
    let before = outputs.done();
    let index = outputs.index;
    let mut outputs = Outputs::open(root).await?;
    if outputs.done() > before {
        let table = &outputs.events.table;
        refiner
            .ctx
            .seen
            .caught_up(table, before, outputs.done())
            .await?;
        refiner.extra_columns = extra_columns(table)?;
    }
    outputs.index = index;
    Ok(outputs)
}

/// The attribute columns schema evolution has added to `silver/patient_events`.
fn extra_columns(table: &DeltaTable) -> Result<Vec<String>> {
    if table.version().is_none() {
        return Ok(Vec::new());
    }
    let schema = table
        .snapshot()
        .map_err(|e| Error::delta(SILVER_EVENTS, e))?
        .schema();
    Ok(schema
        .fields()
        .map(|f| f.name().to_string())
        .filter(|n| SILVER_SCHEMA.field_with_name(n).is_err())
        .collect())
}

/// The `dedupe_key`s of the rows of `table` that match `filter`.
pub(crate) async fn dedupe_keys(table: &DeltaTable, name: &str, filter: Expr) -> Result<KeySet> {
    let mut seen = KeySet::default();
    for batch in scan(table, name, &["dedupe_key"], filter, &[]).await? {
        let keys: &StringArray = crate::storage::column(&batch, name, "dedupe_key")?;
        seen.extend(keys.iter().flatten().filter_map(keys::parse_key));
    }
    Ok(seen)
}

/// Reads bronze batch `seq` back from the bronze table `name` in its original order.
pub(crate) async fn read_bronze(bronze: &DeltaTable, name: &str, seq: i64) -> Result<RecordBatch> {
    let columns = crate::tables::BRONZE_SCHEMA
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>();
    let batches = scan(
        bronze,
        name,
        &columns,
        col("bronze_seq").eq(lit(seq)),
        &["source", "source_line"],
    )
    .await?;
    concat_batches(&crate::tables::BRONZE_SCHEMA, &batches).map_err(|e| Error::arrow(name, e))
}
