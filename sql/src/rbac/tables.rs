//! How each exposed table's rows are tied to hospitals and departments.

/// How a table's rows are limited to a principal's hospitals and departments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowScope {
    /// No patient rows (the calendar, data-quality counts): shown whole.
    Reference,
    /// Rows carry `hospital_id` and `department`.
    Columns,
    /// Patients: those with an admission in scope.
    ViaAdmissions,
    /// Patient data without a hospital or department (raw quarantined text, EHR extracts, the
    /// audit log): network-scoped grants only.
    NetworkOnly,
}

/// The row scope of `schema.table`. Tables not named here are expected to carry
/// `hospital_id` and `department`; one that does not is refused to scoped principals.
pub(crate) fn row_scope(schema: &str, table: &str) -> RowScope {
    match (schema, table) {
        ("gold", "dim_date") | ("ops", "quality_runs") => RowScope::Reference,
        ("gold", "dim_patient") => RowScope::ViaAdmissions,
        ("silver", "quarantine") | ("silver", "ehr_patients") | ("ops", "audit") => {
            RowScope::NetworkOnly
        }
        _ => RowScope::Columns,
    }
}
