//! # patientflow-semantic
//!
//! The semantic layer: a model of named KPIs (contract §5) over the gold star schema, and the
//! `patientflow` DataFusion catalog that serves the Delta tables and the model's views.
//!
//! ```text
//!  model (YAML) ──▶ Model ──┐
//!                           ├─ compile(query) ──▶ DataFrame (logical plan, no SQL text)
//!  MetricQuery ─────────────┘
//!  TableRoot ──▶ DeltaCatalog (gold, silver, ops; latest version per query,
//!                  │           scanned as that version's Parquet files)
//!                  └─▶ PatientflowCatalog (+ kpi: the model's views, compiled on use)
//! ```
//!
//! ```
//! use patientflow_semantic::{Grain, MetricQuery, Model};
//!
//! let model = Model::built_in().unwrap();
//! let query = MetricQuery {
//!     metrics: vec!["occupancy_rate".into(), "average_census".into()],
//!     dimensions: vec!["department".into()],
//!     grain: Some(Grain::Day),
//!     ..MetricQuery::default()
//! };
//! model.validate(&query).unwrap();
//!
//! let wrong = MetricQuery { metrics: vec!["occupancy".into()], ..MetricQuery::default() };
//! let err = model.validate(&wrong).unwrap_err().to_string();
//! assert!(err.starts_with("unknown metric `occupancy`; known: admissions, alos_hours"));
//! ```

mod catalog;
mod compile;
mod error;
mod functions;
mod mapped_files;
mod model;
mod parquet_snapshot;
mod query;

pub use catalog::{CATALOG, DeltaCatalog, EXPOSED_TABLES, KPI_SCHEMA, PatientflowCatalog};
pub use compile::{PERIOD, compile};
pub use error::{Error, Result};
pub use functions::date_trunc;
pub use model::{Aggregate, At, Band, Dimension, Metric, MetricKind, Model, Source};
pub use query::{Grain, MetricQuery, TimeRange};
