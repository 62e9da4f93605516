//! An incremental refresh: only the patients with something new (new silver records, a
//! planned discharge or a stale limit the as-of time passed, an emergency encounter still
//! waiting) are rebuilt, and only the month partitions their rows fall in are rewritten; the
//! census is updated for the months whose segments changed and those the as-of time moved
//! over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::{col, lit};
use deltalake::kernel::Transaction;

use super::carry::{Previous, replace_months};
use super::census::{CensusUpdate, changed_days, whole_months};
use super::changes::Rewrite;
use super::departments::Departments;
use super::due::{ed_waiting, ends_passed, stale_passed};
use super::history::{self, Sources};
use super::history_index::HistoryIndex;
use super::layout::partition_columns;
use super::rebuild::rebuild;
use super::{
    DAY, GoldMetrics, Target, calendar, calendar_range, earliest, month_key, next_stale_txn,
};
use crate::concurrency::on_tasks;
use crate::error::Result;
use crate::storage::{TableRoot, WriteMode, write};
use crate::tables::{
    DIM_DATE, DIM_DEPARTMENT, DIM_PATIENT, FACT_ADMISSION, FACT_CENSUS_HOURLY, FACT_ED_VISIT,
    FACT_STAY_SEGMENT, SILVER_EHR, SILVER_EVENTS,
};

/// The tables keyed by patient, whose rows a refresh rebuilds patient by patient.
const PATIENT_KEYED: [&str; 4] = [
    FACT_ADMISSION,
    FACT_STAY_SEGMENT,
    FACT_ED_VISIT,
    DIM_PATIENT,
];

/// What an incremental refresh reads.
#[derive(Debug)]
pub(super) struct Incremental<'a> {
    pub(super) root: &'a TableRoot,
    pub(super) sources: Sources<'a>,
    /// The patients' silver records by patient (`None`: open elsewhere; silver is searched).
    pub(super) history_index: Option<&'a HistoryIndex>,
    pub(super) tracked: &'a [String],
    pub(super) departments: &'a Departments,
    pub(super) department_batch: RecordBatch,
    pub(super) as_of: i64,
    /// The as-of time of the census the tables hold.
    pub(super) census_as_of: Option<i64>,
    /// The silver sequences every gold table has consumed.
    pub(super) consumed: i64,
    pub(super) ehr_consumed: i64,
}

impl Incremental<'_> {
    /// Rebuilds the affected patients and rewrites the tables not `current`, each commit
    /// recording `txns`.
    pub(super) async fn run(
        self,
        mut targets: BTreeMap<&'static str, Target>,
        current: impl Fn(&Target) -> bool,
        txns: &[Transaction],
        metrics: &mut GoldMetrics,
    ) -> Result<()> {
        let (as_of, departments) = (self.as_of, self.departments);
        let sources = &self.sources;

        // Who to rebuild.
        let mut ids = history::patients_since(sources.events, SILVER_EVENTS, self.consumed).await?;
        ids.extend(history::patients_since(sources.ehr, SILVER_EHR, self.ehr_consumed).await?);
        tracing::debug!(patients = ids.len(), "patients with new records found");
        ids.extend(
            ends_passed(
                &targets[FACT_STAY_SEGMENT].table,
                self.census_as_of.unwrap_or(0),
                as_of,
            )
            .await?,
        );
        let admissions = &targets[FACT_ADMISSION];
        let since = admissions.as_of.unwrap_or(0);
        // No open stay goes stale before the time the last refresh recorded.
        metrics.stale_search = admissions.next_stale.is_none_or(|t| t <= as_of);
        let mut next_stale = admissions.next_stale;
        if metrics.stale_search {
            let (stale, next) = stale_passed(&admissions.table, departments, since, as_of).await?;
            ids.extend(stale);
            next_stale = next;
        }
        ids.extend(ed_waiting(&targets[FACT_ED_VISIT].table).await?);
        tracing::debug!(patients = ids.len(), "patients to rebuild found");
        let history = match self.history_index {
            Some(index) => index.load(sources, &ids, self.tracked).await?,
            None => history::load(sources, Some(&ids), self.tracked).await?,
        };
        tracing::debug!(patients = history.len(), "silver history loaded");
        // The rows the rebuilt patients have now, by what each patient-keyed table (and the
        // census) consumed: one set unless an interrupted refresh left the tables apart.
        let mut previous: BTreeMap<(i64, i64, i64), Previous> = BTreeMap::new();
        for name in PATIENT_KEYED.into_iter().chain([FACT_CENSUS_HOURLY]) {
            let key = targets[name].consumed();
            if let std::collections::btree_map::Entry::Vacant(e) = previous.entry(key) {
                e.insert(Previous::up_to(&history, key, departments, self.tracked)?);
            }
        }
        let previous_of = |t: &Target| previous.get(&t.consumed());

        // Rebuild them.
        let mut rebuilt = rebuild(&history, departments, as_of, metrics)?;
        let next_stale = earliest(next_stale, rebuilt.next_stale);
        let txns = &[txns, &[next_stale_txn(next_stale)]].concat();

        // The census months to recompute: those whose segments changed and those the as-of
        // time moved over, from the rows the census holds.
        let as_of_day = as_of.div_euclid(DAY);
        let new_occupancies = std::mem::take(&mut rebuilt.segments.occupancies);
        // The segments the census was computed from.
        let census_target = &targets[FACT_CENSUS_HOURLY];
        let old = previous_of(census_target).map_or(&[][..], |p| &p.occupancies);
        let held_as_of = self.census_as_of.unwrap_or(as_of);
        let changed = changed_days(old, &new_occupancies, as_of)
            .into_iter()
            .chain(held_as_of.div_euclid(DAY)..=as_of_day);
        let days = whole_months(changed, as_of_day);
        let update = CensusUpdate {
            days: &days,
            as_of,
            held_as_of,
            departments,
            old,
            new: &new_occupancies,
        };
        let (census_batch, unplaced) = update
            .run(
                &census_target.table,
                &targets[FACT_STAY_SEGMENT].table,
                &ids,
            )
            .await?;
        tracing::debug!(days = days.len(), "census computed");
        metrics.unplaced_segments = unplaced;
        metrics.census_days = days.len();
        metrics.census_rows = census_batch.num_rows();
        let existing = calendar_range(&targets[DIM_DATE].table).await?;
        let data_days = new_occupancies
            .iter()
            .map(|o| o.start)
            .chain(history.values().flatten().map(|o| o.time))
            .map(|t| t.div_euclid(DAY));
        let (first_day, last_day) = data_days
            .chain(existing.into_iter().flat_map(|(a, b)| [a, b]))
            .fold((as_of_day, as_of_day), |(lo, hi), d| (lo.min(d), hi.max(d)));
        let calendar = calendar::calendar(first_day, last_day)?;

        let months: BTreeSet<i32> = days.iter().map(|d| month_key(d * DAY)).collect();
        let census_mode = if months.is_empty() {
            // Nothing to replace: an empty append still records what the table holds.
            WriteMode::Append
        } else {
            WriteMode::Replace(
                col("month_key").in_list(months.iter().map(|m| lit(*m)).collect(), false),
            )
        };
        // Patients not rebuilt keep their rows: the months the rebuilt patients' rows fall in
        // are replaced, the other patients' rows of those months carried over; the other
        // months' files are not touched.
        let [segments, admissions, ed_visits, patients] = rebuilt.finish(as_of, self.tracked)?;
        let writes: [(&str, RecordBatch, WriteMode); 7] = [
            (FACT_CENSUS_HOURLY, census_batch, census_mode),
            (segments.0, segments.1, WriteMode::Overwrite),
            (admissions.0, admissions.1, WriteMode::Overwrite),
            (ed_visits.0, ed_visits.1, WriteMode::Overwrite),
            (patients.0, patients.1, WriteMode::Overwrite),
            (
                DIM_DEPARTMENT,
                self.department_batch.clone(),
                WriteMode::Overwrite,
            ),
            (DIM_DATE, calendar, WriteMode::Overwrite),
        ];
        // Write the census first, then the other tables at once, each a task of its own (their
        // comparing, decoding and encoding is work for every core) and each in its own commit
        // (a refresh interrupted between them re-derives each table's previous rows from what
        // that table consumed, so the order is not needed for correctness).
        let (ids, txns) = (Arc::new(ids), Arc::<[Transaction]>::from(txns.as_slice()));
        let [census_write, others @ ..] = writes;
        for group in [vec![census_write], Vec::from(others)] {
            let jobs: Vec<_> = group
                .into_iter()
                .filter_map(|(name, batch, mode)| {
                    let target = targets.remove(name).filter(|t| !current(t))?;
                    let before = previous_of(&target).and_then(|p| p.rows.get(name)).cloned();
                    let job = TableWrite {
                        root: self.root.clone(),
                        name,
                        target,
                        batch,
                        mode,
                        before,
                        ids: ids.clone(),
                        txns: txns.clone(),
                    };
                    Some(job.run())
                })
                .collect();
            metrics.tables_written += on_tasks(jobs).await?.len();
        }
        Ok(())
    }
}

/// The rebuilt rows of one table, to be written.
struct TableWrite {
    root: TableRoot,
    name: &'static str,
    target: Target,
    batch: RecordBatch,
    mode: WriteMode,
    /// Of a patient-keyed table: the rebuilt patients' rows as the table holds them.
    before: Option<RecordBatch>,
    ids: Arc<BTreeSet<String>>,
    txns: Arc<[Transaction]>,
}

impl TableWrite {
    /// Writes the rows: of a patient-keyed table whose rebuilt patients' rows were `before`,
    /// the changed months; of any other table, as `mode` says.
    async fn run(self) -> Result<()> {
        let Self {
            root,
            name,
            target,
            batch,
            mode,
            before,
            ids,
            txns,
        } = self;
        // A patient-keyed table is partitioned by its month column.
        let (batches, mode) = match before.zip(partition_columns(name).first()) {
            Some((before, month)) => {
                let rewrite = Rewrite {
                    root: &root,
                    table: &target.table,
                    name,
                    month,
                    partition_by: partition_columns(name),
                };
                if rewrite.run(&before, batch.clone(), &txns).await? {
                    return Ok(());
                }
                replace_months(&target.table, name, month, &ids, &before, batch).await?
            }
            None => (vec![batch], mode),
        };
        tracing::debug!(
            table = name,
            rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            "writing"
        );
        write(
            target.table,
            name,
            batches,
            mode,
            txns.to_vec(),
            partition_columns(name),
        )
        .await?;
        Ok(())
    }
}
