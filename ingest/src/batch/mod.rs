//! Daily batches (contract §4): department reference files and EHR patient extracts, through
//! bronze and silver like the events — exactly once per file content, with quality counts and
//! a quarantine for bad rows.
//!
//! A file lands in one bronze commit that records its content hash as a Delta application
//! transaction, so the same file again adds nothing. Its silver rows, quarantine rows and
//! quality counts each record the bronze sequence they hold, as the event stream's do.

mod departments;
mod normalise;
mod rows;
pub mod rules;

pub(crate) use departments::{department_rows, departments_reference};
use normalise::{Normalised, normalise};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use deltalake::arrow::array::{
    ArrayRef, BinaryArray, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field as ArrowField, Schema};
use deltalake::datafusion::prelude::lit;

use self::rules::{BatchRule, DEPARTMENT_RULES, EHR_RULES, Row};
use crate::bronze::{Bronze, BronzeChunk};
use crate::error::{Error, Result};
use crate::gold::{GoldMetrics, GoldRefresh};
use crate::quality::QualityRun;
use crate::reference::{DepartmentRow, ReferenceData};
use crate::silver::refine::{lineage_columns, quarantine_rows};
use crate::silver::{Counts, KeySet, Outcome, Output, dedupe_keys, read_bronze};
use crate::storage::{TableRoot, column};
use crate::tables::{
    BRONZE_DEPARTMENTS, BRONZE_EHR, QUALITY_RUNS, QUARANTINE, SILVER_DEPARTMENTS,
    SILVER_DEPARTMENTS_SCHEMA, SILVER_EHR, SILVER_EHR_SCHEMA,
};

/// A kind of daily batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dataset {
    /// Department reference data (capacity, staff, aliases).
    Departments,
    /// EHR patient extracts (demographics and further attributes).
    Ehr,
}

impl Dataset {
    /// The dataset's name in the quality report and quarantine.
    pub fn name(self) -> &'static str {
        match self {
            Self::Departments => "departments",
            Self::Ehr => "ehr_patients",
        }
    }

    /// Its rules, in evaluation order.
    pub fn rules(self) -> &'static [BatchRule] {
        match self {
            Self::Departments => DEPARTMENT_RULES,
            Self::Ehr => EHR_RULES,
        }
    }

    fn bronze(self) -> &'static str {
        match self {
            Self::Departments => BRONZE_DEPARTMENTS,
            Self::Ehr => BRONZE_EHR,
        }
    }

    fn silver(self) -> &'static str {
        match self {
            Self::Departments => SILVER_DEPARTMENTS,
            Self::Ehr => SILVER_EHR,
        }
    }

    /// Application-transaction id of the silver outputs of this dataset.
    pub(crate) fn silver_app(self) -> &'static str {
        match self {
            Self::Departments => "patientflow:silver:departments",
            Self::Ehr => "patientflow:silver:ehr_patients",
        }
    }
}

/// What a batch ingest did.
#[derive(Debug, Clone, Default)]
pub struct BatchMetrics {
    /// Files given.
    pub files: usize,
    /// Files whose content had been ingested before (nothing added).
    pub files_unchanged: usize,
    /// Counts per dataset (rules in [`Dataset::rules`] order).
    pub counts: BTreeMap<Dataset, Counts>,
    /// The gold refresh that followed, if one was asked for.
    pub gold: Option<GoldMetrics>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Lands department and EHR files into bronze and refines them into silver.
#[derive(Debug)]
pub struct BatchIngest {
    root: TableRoot,
    files: Vec<(Dataset, PathBuf)>,
    tz: Tz,
    gold: Option<GoldRefresh>,
}

impl BatchIngest {
    /// A batch ingest into the tables under `root`.
    pub fn new(root: TableRoot) -> Self {
        Self {
            root,
            files: Vec::new(),
            tz: Tz::UTC,
            gold: None,
        }
    }

    /// Adds a file (CSV; EHR extracts may also be Parquet).
    pub fn with_file(mut self, dataset: Dataset, path: impl Into<PathBuf>) -> Self {
        self.files.push((dataset, path.into()));
        self
    }

    /// Time zone of timestamps without an offset (default UTC).
    pub fn with_source_timezone(mut self, tz: Tz) -> Self {
        self.tz = tz;
        self
    }

    /// Refreshes gold afterwards, under the same writer lock.
    pub fn with_gold(mut self, refresh: GoldRefresh) -> Self {
        self.gold = Some(refresh);
        self
    }

    /// Runs the batch ingest.
    pub async fn run(self) -> Result<BatchMetrics> {
        let started = Instant::now();
        let _lock = self.root.lock_writer()?;
        let mut metrics = BatchMetrics {
            files: self.files.len(),
            ..BatchMetrics::default()
        };
        let run = QualityRun::start();
        for dataset in [Dataset::Departments, Dataset::Ehr] {
            let files: Vec<&PathBuf> = self
                .files
                .iter()
                .filter(|(d, _)| *d == dataset)
                .map(|(_, p)| p)
                .collect();
            let mut stage = Stage::open(&self.root, dataset, self.tz, &run).await?;
            let mut counts = stage.catch_up().await?;
            for path in files {
                match stage.land(path).await? {
                    Some(c) => counts.add(&c),
                    None => metrics.files_unchanged += 1,
                }
            }
            if counts.records_in > 0 {
                metrics.counts.insert(dataset, counts);
            }
        }
        if let Some(refresh) = self.gold {
            metrics.gold = Some(refresh.run_locked().await?);
        }
        metrics.elapsed = started.elapsed();
        Ok(metrics)
    }
}

/// The bronze and silver tables of one dataset during a run.
struct Stage<'a> {
    dataset: Dataset,
    bronze: Bronze,
    silver: Output,
    quarantine: Output,
    quality: Output,
    reference: ReferenceData,
    tz: Tz,
    run: &'a QualityRun,
    seen: KeySet,
    extra_columns: Vec<String>,
}

impl<'a> Stage<'a> {
    async fn open(root: &TableRoot, dataset: Dataset, tz: Tz, run: &'a QualityRun) -> Result<Self> {
        let silver = Output::open(root, dataset.silver(), dataset.silver_app()).await?;
        let seen = dedupe_keys(&silver.table, dataset.silver(), lit(true)).await?;
        let base = match dataset {
            Dataset::Departments => &*SILVER_DEPARTMENTS_SCHEMA,
            Dataset::Ehr => &*SILVER_EHR_SCHEMA,
        };
        let extra_columns = match silver.table.snapshot() {
            Ok(s) => s
                .schema()
                .fields()
                .map(|f| f.name().to_string())
                .filter(|n| base.field_with_name(n).is_err())
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(Self {
            dataset,
            bronze: Bronze::open(root, dataset.bronze()).await?,
            quarantine: Output::open(root, QUARANTINE, dataset.silver_app()).await?,
            quality: Output::open(root, QUALITY_RUNS, dataset.silver_app()).await?,
            silver,
            reference: departments_reference(root).await?,
            tz,
            run,
            seen,
            extra_columns,
        })
    }

    fn done(&self) -> i64 {
        self.silver
            .done
            .min(self.quarantine.done)
            .min(self.quality.done)
    }

    /// Refines bronze batches an interrupted run left unrefined.
    async fn catch_up(&mut self) -> Result<Counts> {
        let mut counts = Counts::for_rules(self.dataset.rules().len());
        for seq in self.done() + 1..=self.bronze.seq {
            tracing::info!(
                dataset = self.dataset.name(),
                seq,
                "refining a batch left by an interrupted run"
            );
            let batch = read_bronze(&self.bronze.table, self.dataset.bronze(), seq).await?;
            counts.add(&self.refine(seq, &batch).await?);
        }
        Ok(counts)
    }

    /// Lands one file; `None` when its content was ingested before.
    async fn land(&mut self, path: &Path) -> Result<Option<Counts>> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let app = format!(
            "patientflow:file:{:032x}",
            xxhash_rust::xxh3::xxh3_128(&bytes)
        );
        if self.bronze.position(&app).await?.is_some() {
            tracing::info!(file = %path.display(), "already ingested (same content)");
            return Ok(None);
        }
        let rows = rows::split(path, &bytes)?;
        let source = path.display().to_string();
        let received_at = chrono::Utc::now().timestamp_micros();
        let mut chunk = BronzeChunk::new();
        for row in &rows {
            chunk.push(&source, None, row.line, received_at, &row.raw);
        }
        chunk.set_position(&app, 1);
        let (seq, batch) = self.bronze.commit(chunk).await?;
        tracing::info!(dataset = self.dataset.name(), file = %source, rows = rows.len(), seq, "landed");
        Ok(Some(self.refine(seq, &batch).await?))
    }

    /// Refines bronze batch `seq` into silver, quarantine and quality counts.
    async fn refine(&mut self, seq: i64, bronze: &RecordBatch) -> Result<Counts> {
        let t = self.dataset.bronze();
        let source = column::<StringArray>(bronze, t, "source")?;
        let raw = column::<BinaryArray>(bronze, t, "raw")?;
        let received = column::<TimestampMicrosecondArray>(bronze, t, "received_at")?;
        let rules = self.dataset.rules();
        let mut counts = Counts::for_rules(rules.len());
        let mut headers: BTreeMap<&str, Arc<[String]>> = BTreeMap::new();
        let mut silver_idx = Vec::new();
        let mut quarantine_idx = Vec::new();
        let mut reasons: BTreeMap<usize, Vec<&'static str>> = BTreeMap::new();
        let mut normalised: Vec<Normalised> = Vec::new();
        for i in 0..bronze.num_rows() {
            let src = source.value(i);
            let header = if rows::is_parquet(Path::new(src)) {
                None
            } else if let Some(h) = headers.get(src) {
                Some(h.clone())
            } else {
                // The first row of a CSV file is its header, not a record.
                headers.insert(
                    src,
                    rows::header(raw.value(i)).unwrap_or_else(|| Arc::from(vec![])),
                );
                continue;
            };
            counts.records_in += 1;
            let row = Row {
                fields: rows::fields(raw.value(i), header.as_deref()),
                reference: &self.reference,
                tz: self.tz,
            };
            let matched: Vec<usize> = (0..rules.len())
                .filter(|r| (rules[*r].check)(&row))
                .collect();
            for r in &matched {
                counts.rules[*r] += 1;
            }
            if matched
                .iter()
                .any(|r| rules[*r].outcome == Outcome::Quarantine)
            {
                quarantine_idx.push(i as u32);
                reasons.insert(i, matched.iter().map(|r| rules[*r].name).collect());
                continue;
            }
            let n = normalise(self.dataset, &row, received.value(i));
            if !self.seen.insert(n.key) {
                counts.duplicates += 1;
                if let Some(dup) = rules
                    .iter()
                    .position(|r| r.outcome == Outcome::DropDuplicate)
                {
                    counts.rules[dup] += 1;
                }
                continue;
            }
            silver_idx.push(i as u32);
            normalised.push(n);
        }
        counts.silver_rows = silver_idx.len() as u64;
        counts.quarantined = quarantine_idx.len() as u64;

        let names = rules.iter().map(|r| r.name);
        let quality = self.run.batch(self.dataset.name(), seq, &counts, names)?;
        self.quality.commit(seq, quality, None).await?;
        let silver = self.silver_batch(bronze, &silver_idx, &normalised)?;
        self.silver.commit(seq, silver, None).await?;
        let kind = self.dataset.name();
        let quarantine = quarantine_rows(
            bronze,
            &quarantine_idx,
            |_| Some(kind),
            |i| reasons.get(&i).cloned().unwrap_or_default(),
        )?;
        self.quarantine.commit(seq, quarantine, None).await?;
        Ok(counts)
    }

    fn silver_batch(
        &mut self,
        bronze: &RecordBatch,
        idx: &[u32],
        rows: &[Normalised],
    ) -> Result<RecordBatch> {
        let name = self.dataset.silver();
        let mut columns = lineage_columns(bronze, idx, name)?;
        let key = |n: &Normalised| Some(format!("{:032x}", n.key));
        let fields: Vec<ArrowField> = match self.dataset {
            Dataset::Departments => {
                let d: Vec<&DepartmentRow> =
                    rows.iter().filter_map(|n| n.department.as_ref()).collect();
                columns.extend([
                    Arc::new(d.iter().map(|r| r.hospital_id).collect::<Int32Array>()) as ArrayRef,
                    Arc::new(
                        d.iter()
                            .map(|r| Some(r.hospital_name.as_str()))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(
                        d.iter()
                            .map(|r| Some(r.department.as_str()))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(d.iter().map(|r| r.bed_capacity).collect::<Int32Array>()),
                    Arc::new(d.iter().map(|r| r.staff_count).collect::<Int32Array>()),
                    Arc::new(Date32Array::from(
                        d.iter()
                            .map(|r| {
                                (r.effective_from - chrono::NaiveDate::default()).num_days() as i32
                            })
                            .collect::<Vec<_>>(),
                    )),
                    Arc::new(
                        d.iter()
                            .map(|r| r.aliases.as_deref())
                            .collect::<StringArray>(),
                    ),
                    Arc::new(rows.iter().map(key).collect::<StringArray>()),
                    Arc::new(
                        d.iter()
                            .map(|r| r.warn_after_hours)
                            .collect::<Float64Array>(),
                    ),
                    Arc::new(
                        d.iter()
                            .map(|r| r.stale_after_hours)
                            .collect::<Float64Array>(),
                    ),
                ]);
                SILVER_DEPARTMENTS_SCHEMA
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect()
            }
            Dataset::Ehr => {
                columns.extend([
                    Arc::new(
                        rows.iter()
                            .map(|n| Some(n.patient_id.as_str()))
                            .collect::<StringArray>(),
                    ) as ArrayRef,
                    Arc::new(rows.iter().map(|n| Some(n.gender)).collect::<StringArray>()),
                    Arc::new(rows.iter().map(|n| n.age).collect::<Int32Array>()),
                    Arc::new(
                        rows.iter()
                            .map(|n| Some(n.updated_at))
                            .collect::<TimestampMicrosecondArray>()
                            .with_timezone("UTC"),
                    ),
                    Arc::new(rows.iter().map(key).collect::<StringArray>()),
                ]);
                for n in rows {
                    for (k, _) in &n.extras {
                        if !self.extra_columns.contains(k) {
                            self.extra_columns.push(k.clone());
                        }
                    }
                }
                let mut fields: Vec<ArrowField> = SILVER_EHR_SCHEMA
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                for c in &self.extra_columns {
                    fields.push(ArrowField::new(c, DataType::Utf8, true));
                    columns.push(Arc::new(
                        rows.iter()
                            .map(|n| {
                                n.extras
                                    .iter()
                                    .find(|(k, _)| k == c)
                                    .map(|(_, v)| v.as_str())
                            })
                            .collect::<StringArray>(),
                    ));
                }
                fields
            }
        };
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| Error::arrow(name, e))
    }
}
