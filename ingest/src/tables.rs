//! Table names and schemas: the contract between the pipeline and its readers.

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

/// Application-transaction id under which bronze records its own commit sequence.
pub(crate) const BRONZE_SEQ_APP: &str = "patientflow:bronze_seq";
/// Application-transaction id under which silver tables record the bronze sequence consumed.
pub(crate) const SILVER_APP: &str = "patientflow:silver";

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

/// Department versions (SCD type 2 over `(hospital_id, department)`).
pub const DIM_DEPARTMENT: &str = "gold/dim_department";
/// Patient versions (SCD type 2 over the tracked attributes).
pub const DIM_PATIENT: &str = "gold/dim_patient";
/// The calendar.
pub const DIM_DATE: &str = "gold/dim_date";
/// One row per stay.
pub const FACT_ADMISSION: &str = "gold/fact_admission";
/// One row per stay and department segment (transfers start a new segment).
pub const FACT_STAY_SEGMENT: &str = "gold/fact_stay_segment";
/// One row per hour and department.
pub const FACT_CENSUS_HOURLY: &str = "gold/fact_census_hourly";
/// Every gold table, in the order a refresh commits them.
pub const GOLD_TABLES: [&str; 6] = [
    FACT_CENSUS_HOURLY,
    FACT_STAY_SEGMENT,
    FACT_ADMISSION,
    DIM_PATIENT,
    DIM_DEPARTMENT,
    DIM_DATE,
];

/// Application-transaction id under which every gold table records the silver sequence
/// (bronze batch) it has consumed.
pub(crate) const GOLD_APP: &str = "patientflow:gold";

/// Column types of the gold tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// 64-bit float.
    Double,
    /// UTF-8 text.
    Text,
    /// Boolean.
    Bool,
    /// Calendar date.
    Date,
    /// UTC timestamp, microseconds.
    Timestamp,
}

impl Ty {
    /// The Arrow type.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Int => DataType::Int32,
            Self::Long => DataType::Int64,
            Self::Double => DataType::Float64,
            Self::Text => DataType::Utf8,
            Self::Bool => DataType::Boolean,
            Self::Date => DataType::Date32,
            Self::Timestamp => timestamp_type(),
        }
    }

    /// The type's name in the docs (Spark / Synapse SQL spelling).
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Long => "bigint",
            Self::Double => "double",
            Self::Text => "string",
            Self::Bool => "boolean",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
        }
    }
}

/// A documented column.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// Column name.
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// What it holds.
    pub doc: &'static str,
}

/// A documented gold table: the single source of its schema and its documentation.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// Table path under the root.
    pub name: &'static str,
    /// What one row is.
    pub grain: &'static str,
    /// What the table is for.
    pub doc: &'static str,
    /// Partition columns.
    pub partition_by: &'static [&'static str],
    /// Columns, in order.
    pub columns: &'static [ColumnSpec],
}

impl TableSpec {
    /// The Arrow schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.ty.data_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }
}

const fn c(name: &'static str, ty: Ty, doc: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        nullable: false,
        doc,
    }
}

const fn n(name: &'static str, ty: Ty, doc: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        nullable: true,
        doc,
    }
}

/// `gold/dim_department`.
pub const DIM_DEPARTMENT_SPEC: TableSpec = TableSpec {
    name: DIM_DEPARTMENT,
    grain: "one version of a department of a hospital",
    doc: "SCD type 2 over `(hospital_id, department)`: a change of bed capacity or staff count opens a version from its `effective_from` date; name and aliases are type 1. A department's first version also covers the time before it.",
    partition_by: &[],
    columns: &[
        c(
            "department_sk",
            Ty::Long,
            "surrogate key of the version (stable hash of hospital, department and `valid_from`); -1 in a fact means no reference row",
        ),
        c("hospital_id", Ty::Int, "hospital number"),
        c("hospital_name", Ty::Text, "hospital display name (latest)"),
        c("department", Ty::Text, "canonical department name"),
        c("bed_capacity", Ty::Int, "staffed beds of this version"),
        c("staff_count", Ty::Int, "staff headcount of this version"),
        n("aliases", Ty::Text, "other names, `;`-separated (latest)"),
        c(
            "valid_from",
            Ty::Timestamp,
            "start of the version (midnight UTC of `effective_from`)",
        ),
        n(
            "valid_to",
            Ty::Timestamp,
            "start of the next version; NULL for the current one",
        ),
        c(
            "is_current",
            Ty::Bool,
            "whether this is the current version",
        ),
    ],
};

/// `gold/dim_patient`; the tracked attributes (nullable text) follow these columns.
pub const DIM_PATIENT_SPEC: TableSpec = TableSpec {
    name: DIM_PATIENT,
    grain: "one version of a patient",
    doc: "SCD type 2 over gender and the tracked attributes (configuration `gold.tracked_attributes`, default `insurance_type`; each is a nullable text column after these), sequenced by event time: a late record inserts its version into the past. A record that does not state an attribute keeps the value in force.",
    partition_by: &[],
    columns: &[
        c(
            "patient_sk",
            Ty::Long,
            "surrogate key of the version (stable hash of patient and `valid_from`)",
        ),
        c("patient_id", Ty::Text, "the source's patient id"),
        c("gender", Ty::Text, "`Male`, `Female` or `Unknown`"),
        n(
            "age",
            Ty::Int,
            "latest known age (type 1; the stay's age is `fact_admission.age_at_admission`)",
        ),
        c(
            "valid_from",
            Ty::Timestamp,
            "event time of the record that opened the version",
        ),
        n(
            "valid_to",
            Ty::Timestamp,
            "start of the next version; NULL for the current one",
        ),
        c(
            "is_current",
            Ty::Bool,
            "whether this is the current version",
        ),
    ],
};

/// `gold/dim_date`.
pub const DIM_DATE_SPEC: TableSpec = TableSpec {
    name: DIM_DATE,
    grain: "one calendar day (UTC)",
    doc: "The calendar from the first day in the data to the as-of day.",
    partition_by: &[],
    columns: &[
        c("date_key", Ty::Int, "`yyyymmdd`"),
        c("date", Ty::Date, "the day"),
        c("year", Ty::Int, "calendar year"),
        c("quarter", Ty::Int, "1–4"),
        c("month", Ty::Int, "1–12"),
        c("month_name", Ty::Text, "January …"),
        c("iso_year", Ty::Int, "ISO 8601 week-numbering year"),
        c("iso_week", Ty::Int, "ISO 8601 week, 1–53"),
        c("day_of_month", Ty::Int, "1–31"),
        c("weekday", Ty::Int, "1 = Monday … 7 = Sunday"),
        c("weekday_name", Ty::Text, "Monday …"),
        c("is_weekend", Ty::Bool, "Saturday or Sunday"),
    ],
};

/// `gold/fact_admission`.
pub const FACT_ADMISSION_SPEC: TableSpec = TableSpec {
    name: FACT_ADMISSION,
    grain: "one stay",
    doc: "Stays rebuilt from silver: an ADT encounter from all its events (needs its `ADMIT`), a flat stay from the latest record of its key. Later records of a stay replace its row. Length of stay is in hours from the timestamps, with no day rounding.",
    partition_by: &["admission_month"],
    columns: &[
        c(
            "stay_key",
            Ty::Text,
            "`encounter_id` (ADT) or `flat:<patient_id>:<hospital_id>:<admission µs>` (flat)",
        ),
        c("record_kind", Ty::Text, "`adt` or `flat`"),
        n("encounter_id", Ty::Text, "the encounter of an ADT stay"),
        c("patient_id", Ty::Text, "the source's patient id"),
        c(
            "patient_sk",
            Ty::Long,
            "patient version in force at admission",
        ),
        c("hospital_id", Ty::Int, "hospital number"),
        c(
            "department_sk",
            Ty::Long,
            "department version in force at admission",
        ),
        c("department", Ty::Text, "department at admission"),
        c(
            "discharge_department",
            Ty::Text,
            "department at discharge (or now)",
        ),
        n("bed_id", Ty::Long, "bed at admission"),
        c(
            "admission_time",
            Ty::Timestamp,
            "admission (after the future-time correction)",
        ),
        n(
            "discharge_time",
            Ty::Timestamp,
            "discharge; NULL while admitted (a planned discharge after the as-of time is not one yet)",
        ),
        c(
            "admission_date_key",
            Ty::Int,
            "`dim_date` key of the admission",
        ),
        n(
            "discharge_date_key",
            Ty::Int,
            "`dim_date` key of the discharge",
        ),
        n(
            "length_of_stay_hours",
            Ty::Double,
            "discharge − admission in hours; NULL while admitted",
        ),
        c(
            "is_currently_admitted",
            Ty::Bool,
            "no discharge as of the refresh",
        ),
        n("age_at_admission", Ty::Int, "age on the admitting record"),
        n(
            "ed_arrival_time",
            Ty::Timestamp,
            "emergency-department registration (`ARRIVAL`)",
        ),
        n(
            "ed_wait_minutes",
            Ty::Double,
            "admission − ED arrival in minutes",
        ),
        c(
            "admission_time_corrected",
            Ty::Bool,
            "the admission time was in the future and was set to the receipt time",
        ),
        c("transfers", Ty::Int, "transfers during the stay"),
        c(
            "as_of",
            Ty::Timestamp,
            "as-of time of the refresh that last rebuilt this stay",
        ),
        c(
            "admission_month",
            Ty::Int,
            "`yyyymm` of the admission (partition)",
        ),
    ],
};

/// `gold/fact_stay_segment`.
pub const FACT_STAY_SEGMENT_SPEC: TableSpec = TableSpec {
    name: FACT_STAY_SEGMENT,
    grain: "one stay in one department (a transfer starts a new segment)",
    doc: "Where each stay was and when: the census follows stays across transfers through these segments.",
    partition_by: &[],
    columns: &[
        c("stay_key", Ty::Text, "the stay (`fact_admission.stay_key`)"),
        c(
            "segment_no",
            Ty::Int,
            "0 for the admitting department, then 1, 2, … per transfer",
        ),
        c("patient_id", Ty::Text, "the source's patient id"),
        c("hospital_id", Ty::Int, "hospital number"),
        c("department", Ty::Text, "department of the segment"),
        c(
            "department_sk",
            Ty::Long,
            "department version in force at the segment's start",
        ),
        n("bed_id", Ty::Long, "bed of the segment"),
        c("segment_start", Ty::Timestamp, "admission or transfer in"),
        n(
            "segment_end",
            Ty::Timestamp,
            "transfer out or recorded discharge; NULL while there",
        ),
        c(
            "starts_stay",
            Ty::Bool,
            "the segment begins with the admission",
        ),
        c("ends_stay", Ty::Bool, "the segment ends with the discharge"),
    ],
};

/// `gold/fact_census_hourly`.
pub const FACT_CENSUS_HOURLY_SPEC: TableSpec = TableSpec {
    name: FACT_CENSUS_HOURLY,
    grain: "one hour × one department",
    doc: "Contract §5 per hour, from the segments: census at the start of the hour, capacity of the department version in force then, and the flows within the hour. Covers every department and hour from the first day of the first month in the data to the as-of hour.",
    partition_by: &["month_key"],
    columns: &[
        c("hour_start", Ty::Timestamp, "start of the hour (UTC)"),
        c("date_key", Ty::Int, "`dim_date` key"),
        c("hour", Ty::Int, "0–23"),
        c(
            "department_sk",
            Ty::Long,
            "department version in force at `hour_start`",
        ),
        c("hospital_id", Ty::Int, "hospital number"),
        c("department", Ty::Text, "canonical department name"),
        c(
            "census",
            Ty::Int,
            "stays in the department at `hour_start` (admitted at or before, not yet left)",
        ),
        c("bed_capacity", Ty::Int, "beds of the department version"),
        c("occupancy_rate", Ty::Double, "census / bed_capacity"),
        c(
            "occupied_bed_hours",
            Ty::Double,
            "bed-hours occupied within the hour (period occupancy = Σ occupied / Σ capacity)",
        ),
        c(
            "admissions",
            Ty::Int,
            "stays admitted into the department within the hour",
        ),
        c(
            "discharges",
            Ty::Int,
            "stays discharged from the department within the hour",
        ),
        c("month_key", Ty::Int, "`yyyymm` (partition)"),
    ],
};

/// Every gold table's spec, dimensions first.
pub const GOLD_SPECS: [TableSpec; 6] = [
    DIM_DEPARTMENT_SPEC,
    DIM_PATIENT_SPEC,
    DIM_DATE_SPEC,
    FACT_ADMISSION_SPEC,
    FACT_STAY_SEGMENT_SPEC,
    FACT_CENSUS_HOURLY_SPEC,
];

/// The star schema as Markdown: a Mermaid ER diagram, then each table's columns.
pub fn star_schema_markdown() -> String {
    use std::fmt::Write;
    let short = |name: &str| name.trim_start_matches("gold/").to_string();
    let mut md = String::from("```mermaid\nerDiagram\n");
    for t in GOLD_SPECS {
        let _ = writeln!(md, "    {} {{", short(t.name));
        for col in t.columns {
            let key = match col.name {
                "department_sk" if t.name == DIM_DEPARTMENT => " PK",
                "patient_sk" if t.name == DIM_PATIENT => " PK",
                "date_key" if t.name == DIM_DATE => " PK",
                "stay_key" if t.name == FACT_ADMISSION => " PK",
                name if name.ends_with("_sk")
                    || name.ends_with("date_key")
                    || name == "stay_key" =>
                {
                    " FK"
                }
                _ => "",
            };
            let _ = writeln!(md, "        {} {}{key}", col.ty.sql_name(), col.name);
        }
        md.push_str("    }\n");
    }
    for (from, to, label) in [
        ("fact_admission", "dim_patient", "patient_sk"),
        ("fact_admission", "dim_department", "department_sk"),
        ("fact_admission", "dim_date", "admission_date_key"),
        ("fact_stay_segment", "fact_admission", "stay_key"),
        ("fact_stay_segment", "dim_department", "department_sk"),
        ("fact_census_hourly", "dim_department", "department_sk"),
        ("fact_census_hourly", "dim_date", "date_key"),
    ] {
        let _ = writeln!(md, "    {to} ||--o{{ {from} : {label}");
    }
    md.push_str("```\n");
    for t in GOLD_SPECS {
        let _ = write!(
            md,
            "\n### `{}`\n\nOne row per {}. {}\n",
            t.name, t.grain, t.doc
        );
        if !t.partition_by.is_empty() {
            let _ = writeln!(md, "\nPartitioned by `{}`.", t.partition_by.join("`, `"));
        }
        md.push_str("\n| column | type | null | description |\n| --- | --- | --- | --- |\n");
        for col in t.columns {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} |",
                col.name,
                col.ty.sql_name(),
                if col.nullable { "yes" } else { "no" },
                col.doc
            );
        }
    }
    md
}

/// The silver column name for an extra attribute key: lower-case, `[a-z0-9_]` only, and
/// prefixed with `attr_` where it would clash with a base column or start with a digit.
pub fn attribute_column(key: &str) -> String {
    let mut name: String = key
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
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

    #[test]
    fn the_star_schema_doc_shows_the_tables_of_the_code() {
        let doc = include_str!("../../docs/star-schema.md");
        assert!(
            doc.contains(&star_schema_markdown()),
            "docs/star-schema.md is stale: paste the output of `patientflow gold schema`"
        );
    }
}
