//! # patientflow-sql
//!
//! The query engine behind every door (REST, Flight SQL, the dashboard): one DataFusion
//! context over the `patientflow` catalog, read-only SQL only, semantic queries from the
//! model, a time limit and a memory pool per engine, and a result cache keyed by the query
//! and the Delta versions it read.
//!
//! ```text
//!  client SQL ──▶ validate::read_only ──▶ DataFusion plan ──┐
//!  MetricQuery ──▶ semantic::compile ──▶ DataFusion plan ───┼─▶ Engine (cache │ timeout │ pool) ──▶ QueryResult
//! ```
//!
//! ```
//! use patientflow_sql::{Error, read_only};
//!
//! read_only("SELECT department, count(*) FROM gold.fact_admission GROUP BY 1").unwrap();
//! let err = read_only("DROP TABLE gold.fact_admission").unwrap_err();
//! assert!(matches!(err, Error::NotReadOnly { .. }));
//! assert_eq!(
//!     err.to_string(),
//!     "`DROP TABLE` statements are not allowed: only read-only statements run (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE)"
//! );
//! ```

mod engine;
mod error;
mod holistic;
pub mod rbac;
pub mod synapse;
mod validate;

pub use engine::{
    Admission, AdmissionConfig, AdmissionStats, AuditEntry, AuditSink, Engine, EngineConfig,
    EngineStats, Permit, QueryResult, Refusal, Session, plain_schema, sql_key,
};
pub use error::{Error, Result};
pub use validate::read_only;
