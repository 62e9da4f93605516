//! The bronze and silver tables an ingest writes, open, with the refinement state that goes
//! with them.

use chrono_tz::Tz;

use crate::bronze::{Bronze, BronzeChunk};
use crate::error::{Error, Result};
use crate::quality::QualityRun;
use crate::reference::ReferenceData;
use crate::silver::{self, Counts, Outputs, Refiner};
use crate::storage::{Merged, TableRoot, merge_small_files, update};
use crate::tables::BRONZE_EVENTS;

/// Bronze, silver's outputs and the refiner, as one writer sees them.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) bronze: Bronze,
    pub(crate) refiner: Refiner,
    /// Silver's outputs (taken while a commit to them runs on a task of its own).
    pub(crate) outputs: Option<Outputs>,
}

impl Writer {
    /// Opens the tables under `root`. The caller holds the writer lock.
    pub(crate) async fn open(root: &TableRoot, reference: ReferenceData, tz: Tz) -> Result<Self> {
        let bronze = Bronze::open(root, BRONZE_EVENTS).await?;
        let (refiner, outputs) = silver::open(root, reference, tz).await?;
        Ok(Self {
            bronze,
            refiner,
            outputs: Some(outputs),
        })
    }

    /// The outputs, while no commit holds them.
    pub(crate) fn outputs(&self) -> Result<&Outputs> {
        self.outputs
            .as_ref()
            .ok_or_else(|| Error::Internal("silver outputs lost".into()))
    }

    /// Brings this writer up to what another process committed since it last wrote (bronze's
    /// sequence and positions, silver's dedupe keys), and refines a bronze batch a killed
    /// writer left without its silver rows. The caller holds the writer lock.
    pub(crate) async fn catch_up(
        &mut self,
        root: &TableRoot,
        run: &QualityRun,
        counts: &mut Counts,
    ) -> Result<u64> {
        let latest = self.bronze.latest_seq().await?;
        if latest == self.bronze.seq {
            return Ok(0);
        }
        tracing::info!(
            from = self.bronze.seq,
            to = latest,
            "another writer committed; catching up"
        );
        self.bronze.seq = latest;
        let outputs = self
            .outputs
            .take()
            .ok_or_else(|| Error::Internal("silver outputs lost".into()))?;
        self.outputs = Some(silver::catch_up(root, &mut self.refiner, outputs).await?);
        self.recover(run, counts).await
    }

    /// Refines into silver the bronze batches an interrupted run left without their silver
    /// rows; returns how many.
    pub(crate) async fn recover(&mut self, run: &QualityRun, counts: &mut Counts) -> Result<u64> {
        let mut recovered = 0;
        for seq in self.outputs()?.done() + 1..=self.bronze.seq {
            tracing::info!(seq, "refining bronze batch left by an interrupted run");
            let batch = silver::read_bronze(&self.bronze.table, BRONZE_EVENTS, seq).await?;
            self.refine_and_commit(seq, &batch, run, counts).await?;
            recovered += 1;
        }
        Ok(recovered)
    }

    /// Merges the small files of the table `name` (bronze or one of silver's outputs) and
    /// brings this writer's copy of it up to date. The caller holds the writer lock.
    pub(crate) async fn merge_small_files(
        &mut self,
        root: &TableRoot,
        name: &'static str,
    ) -> Result<Option<Merged>> {
        let table = if name == BRONZE_EVENTS {
            &mut self.bronze.table
        } else {
            self.outputs
                .as_mut()
                .and_then(|o| o.table_mut(name))
                .ok_or_else(|| {
                    Error::Internal(format!("{name} is not a table this writer writes"))
                })?
        };
        let merged = merge_small_files(root, table, name).await?;
        update(table, name).await?;
        Ok(merged)
    }

    /// Lands one chunk in bronze and refines it into silver, one after the other.
    pub(crate) async fn land(&mut self, chunk: BronzeChunk, run: &QualityRun) -> Result<Counts> {
        let (seq, batch) = self.bronze.commit(chunk).await?;
        let mut counts = Counts::for_rules(silver::RULES.len());
        self.refine_and_commit(seq, &batch, run, &mut counts)
            .await?;
        Ok(counts)
    }

    async fn refine_and_commit(
        &mut self,
        seq: i64,
        batch: &deltalake::arrow::array::RecordBatch,
        run: &QualityRun,
        counts: &mut Counts,
    ) -> Result<()> {
        let refined = self.refiner.refine(seq, batch, run)?;
        let outputs = self
            .outputs
            .take()
            .ok_or_else(|| Error::Internal("silver outputs lost".into()))?;
        let (outputs, batch_counts) = outputs.commit(refined).await?;
        self.outputs = Some(outputs);
        counts.add(&batch_counts);
        Ok(())
    }
}
