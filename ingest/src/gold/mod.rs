//! Gold: the star schema (contract §4–§5), refreshed incrementally from silver.
//!
//! The unit of incremental work is the patient: a refresh finds the patients with silver
//! records the gold tables have not consumed yet (plus those whose planned discharge the
//! as-of time has passed, those with an open stay it has made stale (contract §5.1), and those
//! with an emergency-department encounter still waiting), rebuilds their versions, stays and segments from all their silver
//! records, and replaces their rows. The census is recomputed for the days whose segments
//! changed and the days the as-of time moved over. Every gold table records the silver
//! sequence and as-of time it holds as Delta application transactions, so an interrupted
//! refresh re-run finishes exactly the tables it had not written, and a refresh with nothing
//! new is a no-op.

mod calendar;
mod carry;
mod census;
mod departments;
mod due;
mod ed_visits;
mod facts;
mod history;
mod layout;
mod patients;
mod stays;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::{Expr, col, lit};
use deltalake::kernel::Transaction;

use self::carry::{Held, replace_months};
use self::census::{changed_days, read_occupancies, whole_months};
use self::departments::Departments;
use self::due::{discharges_passed, ed_waiting, stale_passed};
use self::ed_visits::EdVisits;
use self::facts::{Admissions, PatientStays, Segments};
use self::layout::{partition_columns, partitioned_as_specified};
use crate::batch::{self, Dataset};
use crate::error::Result;
use crate::open_stays::StayLimits;
use crate::storage::{Keys, TableRoot, WriteMode, column, scan, txn_version, write};
use crate::tables::{
    DIM_DATE, DIM_DEPARTMENT, DIM_PATIENT, FACT_ADMISSION, FACT_CENSUS_HOURLY, FACT_ED_VISIT,
    FACT_STAY_SEGMENT, GOLD_APP, GOLD_TABLES, SILVER_APP, SILVER_EHR, SILVER_EVENTS,
};

pub(crate) const HOUR: i64 = 3_600_000_000;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Application-transaction id under which gold tables record the as-of time (UTC micros).
const AS_OF_APP: &str = "patientflow:gold:as_of";
/// Application-transaction id under which gold tables record the EHR silver sequence consumed.
const EHR_APP: &str = "patientflow:gold:ehr";
/// Application-transaction id under which gold tables record the department data they used.
const DEPARTMENTS_APP: &str = "patientflow:gold:departments";

/// `yyyymmdd` of a UTC instant in microseconds.
pub(crate) fn date_key(t: i64) -> i32 {
    use chrono::Datelike;
    let d = chrono::DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .date_naive();
    d.year() * 10_000 + d.month() as i32 * 100 + d.day() as i32
}

/// `yyyymm` of a UTC instant in microseconds: the month partition of a row keyed by it.
pub(crate) fn month_key(t: i64) -> i32 {
    date_key(t) / 100
}

/// A stable surrogate key for a version: a 63-bit hash of its natural key and start.
pub(crate) fn surrogate_key(natural: &[&str], valid_from: i64) -> i64 {
    let mut bytes = Vec::new();
    for part in natural {
        bytes.extend_from_slice(part.as_bytes());
        bytes.push(0x1f);
    }
    bytes.extend_from_slice(&valid_from.to_le_bytes());
    (xxhash_rust::xxh3::xxh3_64(&bytes) & (i64::MAX as u64)) as i64
}

/// Patient attributes tracked as SCD type 2 by default (besides gender).
pub const DEFAULT_TRACKED_ATTRIBUTES: [&str; 1] = ["insurance_type"];

/// What a gold refresh did.
#[derive(Debug, Clone, Default)]
pub struct GoldMetrics {
    /// The silver sequence (bronze batch) the gold tables now hold.
    pub silver_seq: i64,
    /// The as-of time, UTC micros.
    pub as_of: i64,
    /// Nothing new: no table was written.
    pub unchanged: bool,
    /// Whether every patient was rebuilt (first build, new department data, or asked for).
    pub full: bool,
    /// Patients rebuilt.
    pub patients: usize,
    /// Patient versions written.
    pub patient_versions: usize,
    /// Stays written.
    pub stays: usize,
    /// Encounters that have events but no `ADMIT` yet.
    pub waiting_encounters: usize,
    /// Emergency-department visits (encounters with an `ARRIVAL`) written.
    pub ed_visits: usize,
    /// Stays open but stale at the as-of time (contract §5.1), among those rebuilt.
    pub stale_stays: usize,
    /// Stays whose `(hospital, department)` has no reference version (department key -1).
    pub unknown_departments: usize,
    /// Segments the census could not place, their department having no reference version.
    pub unplaced_segments: usize,
    /// Days of census recomputed.
    pub census_days: usize,
    /// Census rows written.
    pub census_rows: usize,
    /// Gold tables written.
    pub tables_written: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Refreshes the gold tables from silver.
///
/// ```no_run
/// # async fn demo() -> patientflow_ingest::Result<()> {
/// use patientflow_ingest::{GoldRefresh, TableRoot};
/// let metrics = GoldRefresh::new(TableRoot::parse("data")?).run().await?;
/// println!("{} stays", metrics.stays);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GoldRefresh {
    root: TableRoot,
    as_of: Option<i64>,
    tracked: Vec<String>,
    limits: BTreeMap<String, StayLimits>,
    full: bool,
}

/// A gold table and what it holds.
#[derive(Debug)]
struct Target {
    table: DeltaTable,
    seq: i64,
    ehr: i64,
    as_of: Option<i64>,
    departments: Option<i64>,
    /// Partitioned as its specification says (a table of an earlier layout is rebuilt).
    laid_out: bool,
}

impl GoldRefresh {
    /// A refresh of the gold tables under `root`.
    pub fn new(root: TableRoot) -> Self {
        Self {
            root,
            as_of: None,
            tracked: DEFAULT_TRACKED_ATTRIBUTES.map(String::from).to_vec(),
            limits: BTreeMap::new(),
            full: false,
        }
    }

    /// Open-stay limits by department name (contract §5.1), over the contract's defaults; a
    /// department reference file's own limits win over these.
    pub fn with_open_stay_limits(mut self, limits: BTreeMap<String, StayLimits>) -> Self {
        self.limits = limits;
        self
    }

    /// The time the census and `is_currently_admitted` are computed as of (default: now).
    pub fn with_as_of(mut self, as_of: chrono::DateTime<chrono::Utc>) -> Self {
        self.as_of = Some(as_of.timestamp_micros());
        self
    }

    /// The patient attributes tracked as SCD type 2 besides gender.
    pub fn with_tracked_attributes(mut self, attributes: Vec<String>) -> Self {
        self.tracked = attributes;
        self
    }

    /// Rebuild every patient, not only those with new records.
    pub fn with_full_rebuild(mut self, full: bool) -> Self {
        self.full = full;
        self
    }

    /// Takes the writer lock and refreshes.
    pub async fn run(self) -> Result<GoldMetrics> {
        let _lock = self.root.lock_writer()?;
        self.run_locked().await
    }

    /// Refreshes; the caller holds the writer lock.
    pub(crate) async fn run_locked(self) -> Result<GoldMetrics> {
        let started = Instant::now();
        let as_of = self
            .as_of
            .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
        let departments =
            Departments::from_rows(&batch::department_rows(&self.root).await?, &self.limits);
        let department_batch = departments.to_batch()?;
        let fingerprint = fingerprint(&department_batch);

        let silver = self.root.open(SILVER_EVENTS).await?;
        let upto = txn_version(&silver, SILVER_EVENTS, SILVER_APP)
            .await?
            .unwrap_or(0);
        let ehr = self.root.open(SILVER_EHR).await?;
        let ehr_upto = txn_version(&ehr, SILVER_EHR, Dataset::Ehr.silver_app())
            .await?
            .unwrap_or(0);
        let mut targets = BTreeMap::new();
        for name in GOLD_TABLES {
            let table = self.root.open(name).await?;
            let version = |app| txn_version(&table, name, app);
            let target = Target {
                laid_out: partitioned_as_specified(&table, name),
                seq: version(GOLD_APP).await?.unwrap_or(0),
                ehr: version(EHR_APP).await?.unwrap_or(0),
                as_of: version(AS_OF_APP).await?,
                departments: version(DEPARTMENTS_APP).await?,
                table,
            };
            targets.insert(name, target);
        }
        let current = |t: &Target| {
            t.laid_out
                && t.seq >= upto
                && t.ehr >= ehr_upto
                && t.as_of == Some(as_of)
                && t.departments == Some(fingerprint)
        };
        let mut metrics = GoldMetrics {
            silver_seq: upto,
            as_of,
            ..GoldMetrics::default()
        };
        if !self.full && targets.values().all(current) {
            metrics.unchanged = true;
            metrics.elapsed = started.elapsed();
            return Ok(metrics);
        }
        let consumed = targets.values().map(|t| t.seq).min().unwrap_or(0);
        let ehr_consumed = targets.values().map(|t| t.ehr).min().unwrap_or(0);
        let census_as_of = targets[FACT_CENSUS_HOURLY].as_of;
        let full = self.full
            || (consumed == 0 && ehr_consumed == 0)
            || census_as_of.is_none_or(|t| t > as_of)
            || targets
                .values()
                .any(|t| t.departments != Some(fingerprint) || !t.laid_out);
        metrics.full = full;

        // Who to rebuild.
        let affected: Option<BTreeSet<String>> = if full {
            None
        } else {
            let mut ids = history::patients_since(&silver, SILVER_EVENTS, consumed).await?;
            ids.extend(history::patients_since(&ehr, SILVER_EHR, ehr_consumed).await?);
            ids.extend(
                discharges_passed(
                    &targets[FACT_STAY_SEGMENT].table,
                    census_as_of.unwrap_or(0),
                    as_of,
                )
                .await?,
            );
            ids.extend(stale_passed(&targets[FACT_ADMISSION].table, &departments, as_of).await?);
            ids.extend(ed_waiting(&targets[FACT_ED_VISIT].table).await?);
            Some(ids)
        };
        let sources = history::Sources {
            events: &silver,
            events_upto: upto,
            ehr: &ehr,
            ehr_upto,
        };
        tracing::debug!(
            patients = affected.as_ref().map(BTreeSet::len),
            "patients to rebuild found"
        );
        let history = history::load(&sources, affected.as_ref(), &self.tracked).await?;
        tracing::debug!(patients = history.len(), "silver history loaded");
        // Where the rebuilt patients' rows lie now, by the silver sequences a patient-keyed
        // table consumed (one set unless an interrupted refresh left them apart).
        let mut held: BTreeMap<(i64, i64), Held> = BTreeMap::new();
        if affected.is_some() {
            for name in [
                FACT_ADMISSION,
                FACT_STAY_SEGMENT,
                FACT_ED_VISIT,
                DIM_PATIENT,
            ] {
                let t = &targets[name];
                held.entry((t.seq, t.ehr))
                    .or_insert_with(|| Held::up_to(&history, t.seq, t.ehr));
            }
        }
        let held_by = |t: &Target| held.get(&(t.seq, t.ehr));

        // Rebuild them.
        let mut admissions = Admissions::default();
        let mut segments = Segments::default();
        let mut ed_visits = EdVisits::default();
        let mut versions_written = Vec::new();
        for (patient_id, observations) in &history {
            let versions = patients::versions(patient_id, observations);
            let rebuilt = stays::stays(patient_id, observations);
            metrics.waiting_encounters += rebuilt.waiting;
            metrics.stays += rebuilt.stays.len();
            metrics.ed_visits += rebuilt.ed_visits.len();
            let stale: Vec<Option<i64>> = rebuilt
                .stays
                .iter()
                .map(|s| facts::stale_since(s, &departments, as_of))
                .collect();
            let p = PatientStays {
                patient_id,
                versions: &versions,
                stays: &rebuilt.stays,
                stale: &stale,
            };
            admissions.push(&p, &departments, as_of)?;
            segments.push(&p, &departments, as_of);
            ed_visits.push(patient_id, &rebuilt.ed_visits, as_of);
            versions_written.extend(versions);
        }
        metrics.patients = history.len();
        metrics.patient_versions = versions_written.len();
        metrics.unknown_departments = admissions.unknown_departments;
        metrics.stale_stays = admissions.stale;

        // The census months to recompute, and every segment overlapping them.
        let as_of_day = as_of.div_euclid(DAY);
        let new_occupancies = std::mem::take(&mut segments.occupancies);
        let (days, occupancies) = match &affected {
            None => {
                let days = match new_occupancies.iter().map(|o| o.start).min() {
                    Some(first) => whole_months(first.div_euclid(DAY)..=as_of_day, as_of_day),
                    None => BTreeSet::new(),
                };
                (days, new_occupancies)
            }
            Some(ids) => {
                let table = &targets[FACT_STAY_SEGMENT].table;
                let keys = |keep| Keys {
                    column: "patient_id",
                    values: ids,
                    keep,
                };
                let old_months = held_by(&targets[FACT_STAY_SEGMENT])
                    .map(|h| h.admission.iter().map(|m| lit(*m)).collect())
                    .unwrap_or_default();
                let in_old_months = col("admission_month").in_list(old_months, false);
                let old = read_occupancies(table, in_old_months, Some(keys(true))).await?;
                let since = census_as_of.unwrap_or(as_of).div_euclid(DAY);
                let changed = changed_days(&old, &new_occupancies, as_of)
                    .into_iter()
                    .chain(since..=as_of_day);
                let days = whole_months(changed, as_of_day);
                let mut all = new_occupancies;
                if let (Some(first), Some(last)) = (days.first(), days.last()) {
                    let overlapping = col("segment_start").lt(lit_ts((last + 1) * DAY)).and(
                        col("segment_end")
                            .is_null()
                            .or(col("segment_end").gt(lit_ts(first * DAY))),
                    );
                    all.extend(read_occupancies(table, overlapping, Some(keys(false))).await?);
                }
                (days, all)
            }
        };
        let (census_batch, unplaced) = census::census(&days, as_of, &departments, &occupancies)?;
        tracing::debug!(days = days.len(), "census computed");
        metrics.unplaced_segments = unplaced;
        metrics.census_days = days.len();
        metrics.census_rows = census_batch.num_rows();
        let existing = if full {
            None
        } else {
            calendar_range(&targets[DIM_DATE].table).await?
        };
        let data_days = occupancies
            .iter()
            .map(|o| o.start)
            .chain(history.values().flatten().map(|o| o.time))
            .map(|t| t.div_euclid(DAY));
        let (first_day, last_day) = data_days
            .chain(existing.into_iter().flat_map(|(a, b)| [a, b]))
            .fold((as_of_day, as_of_day), |(lo, hi), d| (lo.min(d), hi.max(d)));
        let calendar = calendar::calendar(first_day, last_day)?;

        // Write, census first: its recomputation needs the segments as they were.
        let txns = vec![
            Transaction::new(GOLD_APP, upto),
            Transaction::new(EHR_APP, ehr_upto),
            Transaction::new(AS_OF_APP, as_of),
            Transaction::new(DEPARTMENTS_APP, fingerprint),
        ];
        let months: BTreeSet<i32> = days.iter().map(|d| month_key(d * DAY)).collect();
        let census_mode = if full {
            WriteMode::Overwrite
        } else if months.is_empty() {
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
        let writes: [(&str, RecordBatch, WriteMode); 7] = [
            (FACT_CENSUS_HOURLY, census_batch, census_mode),
            (FACT_STAY_SEGMENT, segments.finish()?, WriteMode::Overwrite),
            (
                FACT_ADMISSION,
                admissions.finish(as_of)?,
                WriteMode::Overwrite,
            ),
            (
                FACT_ED_VISIT,
                ed_visits.finish(as_of)?,
                WriteMode::Overwrite,
            ),
            (
                DIM_PATIENT,
                patients::to_batch(versions_written.iter(), &self.tracked)?,
                WriteMode::Overwrite,
            ),
            (DIM_DEPARTMENT, department_batch, WriteMode::Overwrite),
            (DIM_DATE, calendar, WriteMode::Overwrite),
        ];
        for (name, batch, mode) in writes {
            let Some(target) = targets.remove(name) else {
                continue;
            };
            if !self.full && current(&target) {
                continue;
            }
            let by_patient = held_by(&target).and_then(|h| match name {
                FACT_ADMISSION | FACT_STAY_SEGMENT => Some(("admission_month", &h.admission)),
                FACT_ED_VISIT => Some(("arrival_month", &h.arrival)),
                DIM_PATIENT => Some(("first_seen_month", &h.first_seen)),
                _ => None,
            });
            let (batches, mode) = match (by_patient, &affected) {
                (Some((month, held)), Some(ids)) => {
                    replace_months(&target.table, name, month, ids, held, batch).await?
                }
                // A table of an earlier layout is replaced whole, partitioning included.
                _ if !target.laid_out => (vec![batch], WriteMode::Recreate),
                _ => (vec![batch], mode),
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
                txns.clone(),
                partition_columns(name),
            )
            .await?;
            metrics.tables_written += 1;
        }
        metrics.elapsed = started.elapsed();
        Ok(metrics)
    }
}

/// The as-of time (UTC micros) of the latest refresh that wrote `gold/fact_admission`.
pub(crate) async fn refreshed_as_of(admissions: &DeltaTable) -> Result<Option<i64>> {
    txn_version(admissions, FACT_ADMISSION, AS_OF_APP).await
}

pub(super) fn lit_ts(t: i64) -> Expr {
    lit(
        deltalake::datafusion::scalar::ScalarValue::TimestampMicrosecond(
            Some(t),
            Some("UTC".into()),
        ),
    )
}

/// A fingerprint of the department dimension's content.
fn fingerprint(batch: &RecordBatch) -> i64 {
    let text = format!("{:?}", batch.columns());
    (xxhash_rust::xxh3::xxh3_64(text.as_bytes()) & (i64::MAX as u64)) as i64
}

/// The first and last day of `gold/dim_date`, if it has rows.
async fn calendar_range(dim_date: &DeltaTable) -> Result<Option<(i64, i64)>> {
    let batches = scan(dim_date, DIM_DATE, &["date"], lit(true), &[]).await?;
    let mut range: Option<(i64, i64)> = None;
    for b in &batches {
        let dates = column::<deltalake::arrow::array::Date32Array>(b, DIM_DATE, "date")?;
        for d in dates.iter().flatten().map(i64::from) {
            range = Some(range.map_or((d, d), |(lo, hi)| (lo.min(d), hi.max(d))));
        }
    }
    Ok(range)
}
