//! A full build in bounded memory. Silver is split by patient into slices of about
//! `rows_per_slice` records ([`Slices`]); each slice's patients are rebuilt, their rows written
//! to Parquet files at once and dropped, and their segments counted into the census, which
//! holds one accumulator per department and hour, not the segments. Peak memory is that of
//! one slice, whatever the history. Each table is then replaced in one commit that removes
//! its old files and adds every slice's ([`StagedTable`]), so readers see the previous build or
//! this one, never a part. The slices also fill the patient history index that incremental
//! refreshes read ([`HistoryIndex`]), so the first of them does not build it from silver.

use std::collections::BTreeMap;

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::Transaction;

use super::census::MonthlyCensus;
use super::departments::Departments;
use super::history::{self, Sources};
use super::history_index::HistoryIndex;
use super::layout::partition_columns;
use super::rebuild::{Rebuilt, rebuild};
use super::slices::Slices;
use super::{DAY, GoldMetrics, calendar, earliest, next_stale_txn};
use crate::error::Result;
use crate::maintenance::{checkpoint, compact};
use crate::storage::{StagedTable, TableRoot, WriteMode, write};
use crate::tables::{DIM_DATE, DIM_DEPARTMENT, FACT_CENSUS_HOURLY, FACT_CENSUS_HOURLY_SPEC};

/// What a full build reads and how it slices the work.
#[derive(Debug)]
pub(super) struct FullBuild<'a> {
    pub(super) root: &'a TableRoot,
    pub(super) sources: Sources<'a>,
    pub(super) tracked: &'a [String],
    pub(super) departments: &'a Departments,
    pub(super) department_batch: RecordBatch,
    pub(super) as_of: i64,
    pub(super) rows_per_slice: usize,
    /// Filled from the slices (`None`: open elsewhere).
    pub(super) history_index: Option<&'a HistoryIndex>,
}

/// A gold table a full build replaces: its current state and how it is laid out.
#[derive(Debug)]
pub(super) struct Replaced<'a> {
    pub(super) table: &'a deltalake::DeltaTable,
    pub(super) laid_out: bool,
}

impl FullBuild<'_> {
    /// Rebuilds every patient and replaces the tables of `replace` (by name), each commit
    /// recording `txns`.
    pub(super) async fn run(
        self,
        replace: &BTreeMap<&'static str, Replaced<'_>>,
        txns: &[Transaction],
        metrics: &mut GoldMetrics,
    ) -> Result<()> {
        let as_of = self.as_of;
        let count = Slices::count(&self.sources, self.rows_per_slice).await?;
        metrics.slices = count;
        let scratch = self.root.scratch_dir()?;
        let slices = if count > 1 {
            tracing::info!(slices = count, "splitting silver by patient");
            Some(Slices::split(&self.sources, self.tracked, count, &scratch).await?)
        } else {
            None
        };
        let mut staged = BTreeMap::new();
        let empty = Rebuilt::default().finish(as_of, self.tracked)?;
        for (name, batch) in &empty {
            if replace.contains_key(name) {
                let table =
                    StagedTable::new(self.root, name, batch.schema(), partition_columns(name))?;
                staged.insert(*name, table);
            }
        }
        // The patient history index is filled from the slices, each patient written once.
        let fill = match self.history_index {
            Some(index) => index.fill(&self.sources, self.tracked).await?,
            None => None,
        };
        let mut census = MonthlyCensus::new(as_of, self.departments, &scratch)?;
        let as_of_day = as_of.div_euclid(DAY);
        let (mut first_day, mut last_day) = (as_of_day, as_of_day);
        let mut next_stale: Option<i64> = None;
        for k in 0..count {
            let history = match &slices {
                Some(slices) => slices.load(k)?,
                None => history::load(&self.sources, None, self.tracked).await?,
            };
            let rebuilt = rebuild(&history, self.departments, as_of, metrics)?;
            let days = rebuilt
                .segments
                .occupancies
                .iter()
                .map(|o| o.start)
                .chain(history.values().flatten().map(|o| o.time))
                .map(|t| t.div_euclid(DAY));
            for d in days {
                (first_day, last_day) = (first_day.min(d), last_day.max(d));
            }
            if let Some(fill) = &fill {
                fill.add(&history)?;
            }
            drop(history);
            next_stale = earliest(next_stale, rebuilt.next_stale);
            for o in &rebuilt.segments.occupancies {
                census.add(o)?;
            }
            for (name, batch) in rebuilt.finish(as_of, self.tracked)? {
                if let Some(table) = staged.get_mut(name) {
                    table.write(batch).await?;
                }
            }
            tracing::debug!(slice = k + 1, of = count, "slice rebuilt");
        }
        if let Some(fill) = fill {
            fill.finish(&self.sources, self.tracked)?;
        }
        metrics.unplaced_segments = census.unplaced();
        metrics.census_days = census.days().len();
        if replace.contains_key(FACT_CENSUS_HOURLY) {
            let mut table = StagedTable::new(
                self.root,
                FACT_CENSUS_HOURLY,
                FACT_CENSUS_HOURLY_SPEC.schema(),
                partition_columns(FACT_CENSUS_HOURLY),
            )?;
            for month in census.into_months() {
                let month = month?;
                metrics.census_rows += month.num_rows();
                table.write(month).await?;
            }
            staged.insert(FACT_CENSUS_HOURLY, table);
        }
        let calendar = calendar::calendar(first_day, last_day)?;
        let small = [
            (DIM_DEPARTMENT, self.department_batch),
            (DIM_DATE, calendar),
        ];

        let txns = &[txns, &[next_stale_txn(next_stale)]].concat();
        // Commit, census first (as an incremental refresh does).
        for name in std::iter::once(FACT_CENSUS_HOURLY).chain(empty.iter().map(|(n, _)| *n)) {
            if let (Some(table), Some(target)) = (staged.remove(name), replace.get(name)) {
                table.commit(target.table, txns.to_vec()).await?;
                metrics.tables_written += 1;
                if count > 1 {
                    // A file per slice and month: merged into files of the target size, then
                    // a checkpoint, so that opening the table does not replay the thousands
                    // of files added and removed.
                    let (compacted, _) = compact(self.root.open(name).await?, name).await?;
                    checkpoint(&compacted, name).await?;
                }
            }
        }
        for (name, batch) in small {
            let Some(target) = replace.get(name) else {
                continue;
            };
            let mode = if target.laid_out {
                WriteMode::Overwrite
            } else {
                WriteMode::Recreate
            };
            let table = target.table.clone();
            write(
                table,
                name,
                vec![batch],
                mode,
                txns.to_vec(),
                partition_columns(name),
            )
            .await?;
            metrics.tables_written += 1;
        }
        Ok(())
    }
}
