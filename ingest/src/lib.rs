//! # patientflow-ingest
//!
//! Sources, the simulated producer, the daily batches, and the medallion tables from bronze
//! to the gold star schema, with data quality. It knows nothing of servers: the `patientflow`
//! binary drives it.
//!
//! ```text
//!  producer ──▶ landing folder (NDJSON) ──▶ bronze/patient_events   raw bytes + source position
//!                                              │  (exactly once: positions in the same Delta commit)
//!                                              ▼
//!                          silver/patient_events  ◀─ rules (silver::RULES) ─▶  silver/quarantine
//!                                              │                                ops/quality_runs
//!  department / EHR files ──▶ bronze ──▶ silver/departments, silver/ehr_patients (batch)
//!                                              │
//!                                              ▼
//!        gold: dim_patient, dim_department (SCD2), dim_date,
//!              fact_admission, fact_stay_segment, fact_census_hourly, fact_ed_visit
//!              (gold::GoldRefresh; stale open stays out of the census, open_stays)
//!
//!  maintenance::Maintenance: compaction, checkpoints, VACUUM  ──▶  ops/maintenance
//! ```
//!
//! ```
//! use patientflow_ingest::{FileSink, Ingest, Producer, QualityReport, Shape, TableRoot};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> patientflow_ingest::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let mut sink = FileSink::new(&dir.path().join("landing"), "events", 500)?;
//! let ledger = Producer::new(1_000, Shape::Adt).with_seed(1).run(&mut sink)?;
//!
//! let root = TableRoot::parse(dir.path().join("data").to_str().unwrap())?;
//! let metrics = Ingest::new(root.clone(), dir.path().join("landing")).run().await?;
//! assert_eq!(metrics.counts.records_in, 1_000);
//!
//! let report = QualityReport::load(&root).await?;
//! assert_eq!(report.totals.quarantined, ledger.quarantined);
//! assert_eq!(report.totals.duplicates, ledger.duplicates);
//! # Ok(()) }
//! ```

pub mod batch;
mod bronze;
mod concurrency;
mod error;
pub mod gold;
pub mod maintenance;
pub mod open_stays;
mod pipeline;
pub mod producer;
pub mod quality;
pub mod reference;
pub mod silver;
pub mod source;
mod storage;
pub mod stream;
pub mod tables;

pub use batch::{BatchIngest, BatchMetrics, Dataset};
pub use error::{Error, Result};
pub use gold::{GoldMetrics, GoldRefresh};
pub use maintenance::{Maintenance, MaintenanceReport};
pub use open_stays::StayLimits;
pub use pipeline::{Ingest, IngestMetrics, Progress, ProgressFn};
pub use producer::{FileSink, Ledger, Producer, Shape, Sink};
pub use quality::{OpenStays, QualityReport, ReportCounts};
pub use reference::ReferenceData;
pub use storage::{TableRoot, WriterLock, update_table};
pub use stream::{StopHandle, Stream, StreamMetrics, StreamStatus};
