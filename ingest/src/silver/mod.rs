//! Silver: typed, normalised, deduplicated records and the quarantine (contract §2–§3).
//!
//! Silver is a pure function of bronze. Each bronze batch (by its sequence number) is refined
//! once; the three outputs — `silver/patient_events`, `silver/quarantine` and
//! `ops/quality_runs` — each record the sequence they hold as a Delta application
//! transaction, so after a crash every table catches up from exactly where it stopped.

pub(crate) mod json;
pub(crate) mod record;
pub(crate) mod refine;
pub mod rules;
pub(crate) mod time;

use std::collections::HashSet;

use chrono_tz::Tz;
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, RecordBatch, StringArray};
use deltalake::arrow::compute::concat_batches;
use deltalake::datafusion::prelude::{col, lit};
use deltalake::kernel::Transaction;

pub use refine::Counts;
pub use rules::{Applies, Outcome, RULES, Rule, rules_markdown};

use crate::error::{Error, Result};
use crate::quality::{EVENTS_DATASET, QualityRun};
use crate::reference::ReferenceData;
use crate::storage::{TableRoot, append, scan, txn_version};
use crate::tables::{QUALITY_RUNS, QUARANTINE, SILVER_APP, SILVER_EVENTS, SILVER_SCHEMA};

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

    /// Appends `batch` for bronze sequence `seq` unless this table already holds it.
    pub(crate) async fn commit(&mut self, seq: i64, batch: RecordBatch) -> Result<()> {
        if self.done >= seq {
            return Ok(());
        }
        let txn = vec![Transaction::new(self.app, seq)];
        self.table = append(self.table.clone(), self.name, vec![batch], txn, &[]).await?;
        self.done = seq;
        Ok(())
    }
}

/// The silver stage: its three output tables and the state refinement needs.
#[derive(Debug)]
pub(crate) struct Silver {
    events: Output,
    quarantine: Output,
    quality: Output,
    reference: ReferenceData,
    tz: Tz,
    ctx: rules::Context,
    extra_columns: Vec<String>,
}

impl Silver {
    pub(crate) async fn open(root: &TableRoot, reference: ReferenceData, tz: Tz) -> Result<Self> {
        let events = Output::open(root, SILVER_EVENTS, SILVER_APP).await?;
        let quarantine = Output::open(root, QUARANTINE, SILVER_APP).await?;
        let quality = Output::open(root, QUALITY_RUNS, SILVER_APP).await?;
        let mut silver = Self {
            events,
            quarantine,
            quality,
            reference,
            tz,
            ctx: rules::Context {
                received_at: 0,
                seen: HashSet::new(),
            },
            extra_columns: Vec::new(),
        };
        silver.load_state().await?;
        Ok(silver)
    }

    /// The last bronze sequence that every output holds.
    pub(crate) fn done(&self) -> i64 {
        self.events
            .done
            .min(self.quarantine.done)
            .min(self.quality.done)
    }

    /// Loads the duplicate keys of every silver row from before the next sequence to refine,
    /// and the attribute columns silver already has.
    async fn load_state(&mut self) -> Result<()> {
        let table = &self.events.table;
        if table.version().is_some() {
            let schema = table
                .snapshot()
                .map_err(|e| Error::delta(SILVER_EVENTS, e))?
                .schema();
            self.extra_columns = schema
                .fields()
                .map(|f| f.name().to_string())
                .filter(|n| SILVER_SCHEMA.field_with_name(n).is_err())
                .collect();
        }
        let before = self.done();
        let batches = scan(
            table,
            SILVER_EVENTS,
            &["dedupe_key"],
            col("bronze_seq").lt_eq(lit(before)),
            &[],
        )
        .await?;
        for batch in batches {
            let keys = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| {
                    Error::arrow(
                        SILVER_EVENTS,
                        std::io::Error::other("dedupe_key is not text"),
                    )
                })?;
            for key in keys.iter().flatten() {
                if let Ok(k) = u128::from_str_radix(key, 16) {
                    self.ctx.seen.insert(k);
                }
            }
        }
        Ok(())
    }

    /// Refines bronze batch `seq` and commits it to every output that lacks it.
    pub(crate) async fn process(
        &mut self,
        seq: i64,
        bronze: &RecordBatch,
        run: &QualityRun,
    ) -> Result<Counts> {
        let refined = refine::refine(
            bronze,
            &self.reference,
            self.tz,
            &mut self.ctx,
            &mut self.extra_columns,
        )?;
        // The three tables commit concurrently; each records the bronze sequence it holds, so
        // after a crash at any point every table that lacks this batch gets it exactly once.
        let quality = run.batch(
            EVENTS_DATASET,
            seq,
            &refined.counts,
            RULES.iter().map(|r| r.name),
        )?;
        futures::try_join!(
            self.quality.commit(seq, quality),
            self.events.commit(seq, refined.silver),
            self.quarantine.commit(seq, refined.quarantine),
        )?;
        Ok(refined.counts)
    }

    /// Reads bronze batch `seq` back from the bronze table `name` in its original order.
    pub(crate) async fn read_bronze(
        bronze: &DeltaTable,
        name: &str,
        seq: i64,
    ) -> Result<RecordBatch> {
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
}
