//! What a gold refresh reports.

use std::time::Duration;

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
    /// Slices of patients a full build was done in (0 for an incremental refresh).
    pub slices: usize,
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
    /// Whether an incremental refresh searched `fact_admission` for stays the as-of time made
    /// stale: it does not before the earliest time the last refresh recorded one goes stale.
    pub stale_search: bool,
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
