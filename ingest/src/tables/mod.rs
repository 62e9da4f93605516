//! Table names and schemas: the contract between the pipeline and its readers.

mod gold;
mod spec;

use std::sync::{Arc, LazyLock};

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Every message as received, byte for byte.
pub const BRONZE_EVENTS: &str = "bronze/patient_events";
/// Typed, normalised, deduplicated records.
pub const SILVER_EVENTS: &str = "silver/patient_events";
/// Records that failed a quarantine rule, with raw text and reasons.
pub const QUARANTINE: &str = "silver/quarantine";
/// Per-run, per-rule data-quality counts.
pub const QUALITY_RUNS: &str = "ops/quality_runs";

/// Every query the query service answered or refused: who, what, how many rows, outcome.
pub const AUDIT: &str = "ops/audit";

/// Every table patientflow writes, bronze to gold and the operational tables.
pub const ALL_TABLES: [&str; 19] = [
    BRONZE_EVENTS,
    BRONZE_DEPARTMENTS,
    BRONZE_EHR,
    SILVER_EVENTS,
    QUARANTINE,
    SILVER_DEPARTMENTS,
    SILVER_EHR,
    QUALITY_RUNS,
    AUDIT,
    MAINTENANCE,
    PIPELINE_RUNS,
    ALERTS,
    DIM_DEPARTMENT,
    DIM_PATIENT,
    DIM_DATE,
    FACT_ADMISSION,
    FACT_STAY_SEGMENT,
    FACT_CENSUS_HOURLY,
    FACT_ED_VISIT,
];

/// Application-transaction id under which bronze records its own commit sequence.
pub(crate) const BRONZE_SEQ_APP: &str = "patientflow:bronze_seq";
/// Application-transaction id under which silver tables record the bronze sequence consumed.
pub(crate) const SILVER_APP: &str = "patientflow:silver";
/// Application-transaction id under which `silver/patient_events` records the newest event time
/// among its records (UTC microseconds): an ADT event's time or a flat record's admission, never
/// a time silver corrected (a future time set to its receipt).
pub(crate) const SILVER_EVENTS_AS_OF_APP: &str = "patientflow:silver:events_as_of";

/// UTC timestamps in microseconds, the type of every time column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A column of [`timestamp_type`] values.
pub(crate) fn timestamp_array(values: Vec<Option<i64>>) -> deltalake::arrow::array::ArrayRef {
    Arc::new(deltalake::arrow::array::TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

fn list_of_strings() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// Lineage columns shared by bronze, silver and quarantine.
fn lineage() -> Vec<Field> {
    vec![
        Field::new("bronze_seq", DataType::Int64, false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("source_line", DataType::Int64, false),
        Field::new("received_at", timestamp_type(), false),
    ]
}

/// `bronze/patient_events`: lineage plus the raw bytes.
pub static BRONZE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = lineage();
    fields.push(Field::new("raw", DataType::Binary, false));
    Arc::new(Schema::new(fields))
});

/// `silver/patient_events` before schema evolution adds attribute columns (all `Utf8`,
/// nullable) after these.
pub static SILVER_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = lineage();
    fields.extend([
        Field::new("record_kind", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, true),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("event_time", timestamp_type(), true),
        Field::new("encounter_id", DataType::Utf8, true),
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("hospital_id", DataType::Int32, false),
        Field::new("department", DataType::Utf8, false),
        Field::new("bed_id", DataType::Int64, true),
        Field::new("gender", DataType::Utf8, false),
        Field::new("age", DataType::Int32, true),
        Field::new("admission_time", timestamp_type(), true),
        Field::new("discharge_time", timestamp_type(), true),
        Field::new("admission_time_corrected", DataType::Boolean, false),
        Field::new("quality_flags", list_of_strings(), true),
        Field::new("dedupe_key", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(fields))
});

/// `silver/quarantine`.
pub static QUARANTINE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = lineage();
    fields.extend([
        Field::new("record_kind", DataType::Utf8, true),
        Field::new("reasons", list_of_strings(), false),
        Field::new("raw_text", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(fields))
});

/// `ops/quality_runs`: one row per run, bronze sequence and metric.
pub static QUALITY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("run_started_at", timestamp_type(), false),
        Field::new("recorded_at", timestamp_type(), false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("bronze_seq", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Int64, false),
    ]))
});

/// `ops/audit`: one row per query.
pub static AUDIT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("recorded_at", timestamp_type(), false),
        Field::new("principal_oid", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("roles", list_of_strings(), false),
        Field::new("door", DataType::Utf8, false),
        Field::new("statement_sha256", DataType::Utf8, false),
        Field::new("tables", list_of_strings(), false),
        Field::new("rows_returned", DataType::Int64, false),
        Field::new("duration_ms", DataType::Float64, false),
        Field::new("cached", DataType::Boolean, false),
        Field::new("outcome", DataType::Utf8, false),
    ]))
});

/// What `patientflow maintain` did: one row per run, table and operation.
pub const MAINTENANCE: &str = "ops/maintenance";

/// `ops/maintenance`: one row per run, table and operation (`checkpoint_interval`, `compact`,
/// `checkpoint`, `log_cleanup`, `vacuum`).
pub static MAINTENANCE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("recorded_at", timestamp_type(), false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("operation", DataType::Utf8, false),
        Field::new("dry_run", DataType::Boolean, false),
        Field::new("table_version", DataType::Int64, false),
        Field::new("files_removed", DataType::Int64, false),
        Field::new("files_added", DataType::Int64, false),
        Field::new("bytes_removed", DataType::Int64, false),
    ]))
});

/// What `patientflow run` ran: one row per state change of a run (queued, running, succeeded,
/// failed), so a run's state is its latest row.
pub const PIPELINE_RUNS: &str = "ops/pipeline_runs";

/// `ops/pipeline_runs`.
pub static PIPELINE_RUNS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("idempotency_key", DataType::Utf8, false),
        Field::new("scheduled_for", timestamp_type(), true),
        Field::new("attempt", DataType::Int32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("recorded_at", timestamp_type(), false),
        Field::new("queued_at", timestamp_type(), false),
        Field::new("started_at", timestamp_type(), true),
        Field::new("ended_at", timestamp_type(), true),
        Field::new("error", DataType::Utf8, true),
        Field::new("files", DataType::Int64, false),
        Field::new("records_in", DataType::Int64, false),
        Field::new("silver_rows", DataType::Int64, false),
        Field::new("quarantined", DataType::Int64, false),
        Field::new("duplicates", DataType::Int64, false),
    ]))
});

/// The alerts `patientflow run` raised: one row per notice (firing, repeated, resolved).
pub const ALERTS: &str = "ops/alerts";

/// `ops/alerts`.
pub static ALERTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("recorded_at", timestamp_type(), false),
        Field::new("fingerprint", DataType::Utf8, false),
        Field::new("alert_key", DataType::Utf8, false),
        Field::new("condition", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, true),
        Field::new("hospital_id", DataType::Int32, true),
        Field::new("department", DataType::Utf8, true),
        Field::new("summary", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, true),
        Field::new("starts_at", timestamp_type(), false),
        Field::new("ends_at", timestamp_type(), true),
    ]))
});

/// Department reference files, row by row as received (CSV header included).
pub const BRONZE_DEPARTMENTS: &str = "bronze/departments";
/// EHR patient extracts, row by row as received (CSV header included; Parquet rows as JSON).
pub const BRONZE_EHR: &str = "bronze/ehr_patients";
/// Typed department reference rows.
pub const SILVER_DEPARTMENTS: &str = "silver/departments";
/// Typed EHR patient rows.
pub const SILVER_EHR: &str = "silver/ehr_patients";

/// `silver/departments`.
pub static SILVER_DEPARTMENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = lineage();
    fields.extend([
        Field::new("hospital_id", DataType::Int32, false),
        Field::new("hospital_name", DataType::Utf8, false),
        Field::new("department", DataType::Utf8, false),
        Field::new("bed_capacity", DataType::Int32, false),
        Field::new("staff_count", DataType::Int32, false),
        Field::new("effective_from", DataType::Date32, false),
        Field::new("aliases", DataType::Utf8, true),
        Field::new("dedupe_key", DataType::Utf8, false),
        // Added with contract §5.1; tables written before lack them (read as NULL).
        Field::new("warn_after_hours", DataType::Float64, true),
        Field::new("stale_after_hours", DataType::Float64, true),
    ]);
    Arc::new(Schema::new(fields))
});

/// `silver/ehr_patients` before schema evolution adds attribute columns (nullable `Utf8`).
pub static SILVER_EHR_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = lineage();
    fields.extend([
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("gender", DataType::Utf8, false),
        Field::new("age", DataType::Int32, true),
        Field::new("updated_at", timestamp_type(), false),
        Field::new("dedupe_key", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(fields))
});

pub use gold::*;
pub use spec::{ColumnSpec, TableSpec, Ty};

/// `text` lower-cased with every character but `[a-z0-9]` turned into `_`: a name safe as a
/// column or schema identifier in any engine.
pub fn identifier_slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The silver column name for an extra attribute key: lower-case, `[a-z0-9_]` only, and
/// prefixed with `attr_` where it would clash with a base column or start with a digit.
pub fn attribute_column(key: &str) -> String {
    let mut name = identifier_slug(key.trim());
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || SILVER_SCHEMA.fields().iter().any(|f| *f.name() == name)
    {
        name.insert_str(0, "attr_");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_columns_are_safe_names() {
        assert_eq!(attribute_column("insurance_type"), "insurance_type");
        assert_eq!(attribute_column("Triage Level"), "triage_level");
        assert_eq!(attribute_column("event_time"), "attr_event_time");
        assert_eq!(attribute_column("2nd"), "attr_2nd");
        assert_eq!(attribute_column(""), "attr_");
    }
}
