//! Gold: the star schema (contract §4–§5), refreshed incrementally from silver.
//!
//! The unit of work is the patient: a patient's versions, stays and segments are rebuilt from
//! all their silver records. A full build ([`full`]) does every patient, a slice of patients
//! at a time so that its memory does not grow with the history; an incremental refresh
//! ([`incremental`]) does the patients with something new and rewrites only the month
//! partitions their rows fall in. Every gold table records the silver sequence and as-of time
//! it holds as Delta application transactions, so an interrupted refresh re-run finishes
//! exactly the tables it had not written, and a refresh with nothing new is a no-op.

mod calendar;
mod carry;
mod census;
mod changes;
mod departments;
mod due;
mod ed_visits;
mod facts;
mod freshness;
mod full;
mod history;
mod history_index;
mod incremental;
mod layout;
mod metrics;
mod patients;
mod rebuild;
mod slices;
mod stays;

pub use freshness::{Freshness, freshness};
pub use metrics::GoldMetrics;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::{Expr, lit};
use deltalake::kernel::Transaction;

use self::departments::Departments;
use self::full::{FullBuild, Replaced};
use self::history_index::HistoryIndex;
use self::incremental::Incremental;
use self::layout::partitioned_as_specified;
use crate::batch::{self, Dataset};
use crate::concurrency::{TABLES_OPENED_AT_ONCE, at_most};
use crate::error::{Error, Result};
use crate::open_stays::StayLimits;
use crate::storage::{TableRoot, column, scan, txn_version, update};
use crate::tables::{
    DIM_DATE, FACT_ADMISSION, FACT_CENSUS_HOURLY, GOLD_APP, GOLD_TABLES, SILVER_APP, SILVER_EHR,
    SILVER_EVENTS, SILVER_EVENTS_AS_OF_APP,
};

pub(crate) const HOUR: i64 = 3_600_000_000;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Application-transaction id under which gold tables record the as-of time (UTC micros).
const AS_OF_APP: &str = "patientflow:gold:as_of";
/// Application-transaction id under which gold tables record the newest event time among the
/// records they consumed (UTC micros), copied from silver's.
const EVENTS_APP: &str = "patientflow:gold:events_as_of";
/// Application-transaction id under which gold tables record the EHR silver sequence consumed.
const EHR_APP: &str = "patientflow:gold:ehr";
/// Application-transaction id under which gold tables record the department data they used.
const DEPARTMENTS_APP: &str = "patientflow:gold:departments";
/// Application-transaction id under which gold tables record the earliest time (UTC micros) a
/// stay open and not stale at their as-of time goes stale (`i64::MAX`: none will): until then
/// a refresh has no stay to look for that the clock made stale.
const NEXT_STALE_APP: &str = "patientflow:gold:next_stale";

/// The earlier of two times, either unknown.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    a.into_iter().chain(b).min()
}

/// The application transaction recording `next_stale` (see [`NEXT_STALE_APP`]).
fn next_stale_txn(next_stale: Option<i64>) -> Transaction {
    Transaction::new(NEXT_STALE_APP, next_stale.unwrap_or(i64::MAX))
}

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
    rows_per_slice: usize,
    /// What a refresh that keeps things open between runs holds, shared by its clones
    /// (`None`: each refresh opens what it reads).
    held: Option<Arc<Mutex<Held>>>,
}

/// The patient history index and the tables a refresh opened, kept for the next one.
#[derive(Debug, Default)]
struct Held {
    index: Option<Arc<HistoryIndex>>,
    /// Each table as last loaded: the next refresh reads only the commits since.
    tables: BTreeMap<String, DeltaTable>,
}

/// Silver records per slice of a full build (about 1 GiB of working memory).
pub const DEFAULT_ROWS_PER_SLICE: usize = 1_000_000;

/// The silver tables a refresh reads, each with the bronze sequence it holds records up to.
struct Silver {
    events: DeltaTable,
    events_upto: i64,
    ehr: DeltaTable,
    ehr_upto: i64,
}

impl Silver {
    /// The tables as the patient histories are read from them.
    fn sources(&self) -> history::Sources<'_> {
        history::Sources {
            events: &self.events,
            events_upto: self.events_upto,
            ehr: &self.ehr,
            ehr_upto: self.ehr_upto,
        }
    }
}

/// A gold table and what it holds.
#[derive(Debug)]
struct Target {
    table: DeltaTable,
    seq: i64,
    ehr: i64,
    as_of: Option<i64>,
    departments: Option<i64>,
    /// See [`NEXT_STALE_APP`]; `None` when not recorded.
    next_stale: Option<i64>,
    /// Partitioned as its specification says (a table of an earlier layout is rebuilt).
    laid_out: bool,
}

impl Target {
    /// What the table's rows were built from: the event and EHR silver sequences it consumed
    /// and the as-of time it was built at.
    fn consumed(&self) -> (i64, i64, i64) {
        (self.seq, self.ehr, self.as_of.unwrap_or_default())
    }
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
            rows_per_slice: DEFAULT_ROWS_PER_SLICE,
            held: None,
        }
    }

    /// Keeps the patient history index and the tables open from one refresh to the next, in
    /// this refresh and its clones: a stream refreshing every second does not reopen the
    /// index nor replay each table's log each time. Other processes refreshing meanwhile read
    /// silver instead of the index.
    pub fn keeping_open(mut self) -> Self {
        self.held = Some(Arc::default());
        self
    }

    fn held(&self) -> Option<std::sync::MutexGuard<'_, Held>> {
        let held = self.held.as_ref()?;
        Some(
            held.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The patient history index; `None` when another process has it open.
    fn history_index(&self) -> Result<Option<Arc<HistoryIndex>>> {
        let Some(mut held) = self.held() else {
            return Ok(HistoryIndex::open(&self.root)?.map(Arc::new));
        };
        if held.index.is_none() {
            held.index = HistoryIndex::open(&self.root)?.map(Arc::new);
        }
        Ok(held.index.clone())
    }

    /// Opens the table `name`: a held one brought up to date with the commits since it was
    /// last loaded, otherwise from its log.
    async fn open(&self, name: &str) -> Result<DeltaTable> {
        let cached = self.held().and_then(|h| h.tables.get(name).cloned());
        let table = match cached {
            Some(mut table) => match update(&mut table, name).await {
                Ok(()) => table,
                Err(e) => {
                    tracing::debug!(table = name, error = %e, "reloading a held table");
                    self.root.open(name).await?
                }
            },
            None => self.root.open(name).await?,
        };
        if let Some(mut held) = self.held() {
            held.tables.insert(name.to_string(), table.clone());
        }
        Ok(table)
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

    /// How many silver records a full build rebuilds at a time: its memory is that of one
    /// slice, whatever the history.
    pub fn with_rows_per_slice(mut self, rows: usize) -> Self {
        self.rows_per_slice = rows.max(1);
        self
    }

    /// Opens the gold table `name` with what it holds.
    async fn target(&self, name: &str) -> Result<Target> {
        let table = self.open(name).await?;
        let version = |app| txn_version(&table, name, app);
        let (seq, ehr, as_of, departments, next_stale) = futures::try_join!(
            version(GOLD_APP),
            version(EHR_APP),
            version(AS_OF_APP),
            version(DEPARTMENTS_APP),
            version(NEXT_STALE_APP)
        )?;
        Ok(Target {
            laid_out: partitioned_as_specified(&table, name),
            seq: seq.unwrap_or(0),
            ehr: ehr.unwrap_or(0),
            as_of,
            departments,
            next_stale,
            table,
        })
    }

    /// Opens the silver tables a refresh reads: events and EHR extracts.
    async fn silver(&self) -> Result<Silver> {
        let open = |name, app| async move {
            let table = self.open(name).await?;
            let upto = txn_version(&table, name, app).await?.unwrap_or(0);
            Ok::<_, Error>((table, upto))
        };
        let ((events, events_upto), (ehr, ehr_upto)) = futures::try_join!(
            open(SILVER_EVENTS, SILVER_APP),
            open(SILVER_EHR, Dataset::Ehr.silver_app())
        )?;
        Ok(Silver {
            events,
            events_upto,
            ehr,
            ehr_upto,
        })
    }

    /// Brings the patient history index up to silver as it is now, ahead of the next refresh,
    /// which then finds its patients' histories at hand. A stream calls this once a batch is in
    /// silver, while gold still refreshes the batch before. Does nothing unless the refresh
    /// keeps the index open ([`GoldRefresh::keeping_open`]) and has opened it.
    pub async fn catch_up_index(&self) -> Result<()> {
        let Some(index) = self.held().and_then(|held| held.index.clone()) else {
            return Ok(());
        };
        let silver = self.silver().await?;
        index.catch_up(&silver.sources(), &self.tracked).await
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

        let silver = self.silver().await?;
        let (upto, ehr_upto) = (silver.events_upto, silver.ehr_upto);
        // Each table's log is read on its own, four tables at a time: all eleven at once (each
        // reading its log several files at a time) grew tokio's blocking pool by tens of threads
        // a burst, and a stream kept them (BENCHMARKS.md, thread count and memory).
        let opened = GOLD_TABLES.iter().map(|name| self.target(name)).collect();
        let opened = at_most(TABLES_OPENED_AT_ONCE, opened).await?;
        let targets: BTreeMap<&'static str, Target> =
            GOLD_TABLES.iter().copied().zip(opened).collect();
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
        tracing::debug!(upto, ehr_upto, "gold tables opened");
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
        let sources = silver.sources();
        let events_as_of =
            txn_version(sources.events, SILVER_EVENTS, SILVER_EVENTS_AS_OF_APP).await?;
        let txns: Vec<Transaction> = [
            Transaction::new(GOLD_APP, upto),
            Transaction::new(EHR_APP, ehr_upto),
            Transaction::new(AS_OF_APP, as_of),
            Transaction::new(DEPARTMENTS_APP, fingerprint),
        ]
        .into_iter()
        .chain(events_as_of.map(|t| Transaction::new(EVENTS_APP, t)))
        .collect();
        let history_index = self.history_index()?;
        if full {
            let replace = targets
                .iter()
                .filter(|(_, t)| self.full || !current(t))
                .map(|(name, t)| {
                    let replaced = Replaced {
                        table: &t.table,
                        laid_out: t.laid_out,
                    };
                    (*name, replaced)
                })
                .collect();
            let build = FullBuild {
                root: &self.root,
                sources,
                tracked: &self.tracked,
                departments: &departments,
                department_batch,
                as_of,
                rows_per_slice: self.rows_per_slice,
                history_index: history_index.as_deref(),
            };
            build.run(&replace, &txns, &mut metrics).await?;
        } else {
            let refresh = Incremental {
                root: &self.root,
                sources,
                history_index: history_index.as_deref(),
                tracked: &self.tracked,
                departments: &departments,
                department_batch,
                as_of,
                census_as_of,
                consumed,
                ehr_consumed,
            };
            refresh.run(targets, current, &txns, &mut metrics).await?;
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
