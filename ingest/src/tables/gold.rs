//! The gold star schema's tables: each one's columns and documentation in one place, from
//! which the Arrow schemas and `docs/star-schema.md` are derived.

use super::spec::{TableSpec, Ty, c, n};

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
/// One row per encounter registered at the emergency department.
pub const FACT_ED_VISIT: &str = "gold/fact_ed_visit";
/// Every gold table, in the order a refresh commits them.
pub const GOLD_TABLES: [&str; 7] = [
    FACT_CENSUS_HOURLY,
    FACT_STAY_SEGMENT,
    FACT_ADMISSION,
    FACT_ED_VISIT,
    DIM_PATIENT,
    DIM_DEPARTMENT,
    DIM_DATE,
];

/// Application-transaction id under which every gold table records the silver sequence
/// (bronze batch) it has consumed.
pub(crate) const GOLD_APP: &str = "patientflow:gold";

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
        c(
            "warn_after_hours",
            Ty::Double,
            "hours without an event after which an open stay is long-open (type 1; contract §5.1)",
        ),
        c(
            "stale_after_hours",
            Ty::Double,
            "hours without an event after which an open stay is stale and leaves the census (type 1)",
        ),
    ],
};

/// `gold/dim_patient`; the tracked attributes (nullable text) follow these columns.
pub const DIM_PATIENT_SPEC: TableSpec = TableSpec {
    name: DIM_PATIENT,
    grain: "one version of a patient",
    doc: "SCD type 2 over gender and the tracked attributes (configuration `gold.tracked_attributes`, default `insurance_type`; each is a nullable text column after these), sequenced by event time: a late record inserts its version into the past. A record that does not state an attribute keeps the value in force. All versions of a patient lie in the partition of the month the patient was first seen; a refresh rewrites only the files holding versions it changed.",
    partition_by: &["first_seen_month"],
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
        c(
            "first_seen_month",
            Ty::Int,
            "`yyyymm` of the patient's first version (partition)",
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
            "no discharge as of the refresh, and not stale",
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
            "last_event_time",
            Ty::Timestamp,
            "latest event time among the stay's records (a flat record: its admission, or its receipt when later)",
        ),
        n(
            "stale_since",
            Ty::Timestamp,
            "open stay quiet for its current department's `stale_after`: `last_event_time + stale_after` when at or before the as-of time; from then on it is in no census (contract §5.1). NULL otherwise",
        ),
        c(
            "as_of",
            Ty::Timestamp,
            "as-of time of the refresh that last changed this stay's row",
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
    doc: "Where each stay was and when: the census follows stays across transfers through these segments. Partitioned like `fact_admission`, by the month of the stay's admission.",
    partition_by: &["admission_month"],
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
        n(
            "segment_hours",
            Ty::Double,
            "hours in the department (`time_in_department_hours`); NULL while there or before a planned end",
        ),
        n(
            "stale_since",
            Ty::Timestamp,
            "on the last segment of a stale stay: when it left the census (`fact_admission.stale_since`)",
        ),
        c(
            "admission_month",
            Ty::Int,
            "`yyyymm` of the stay's admission (partition)",
        ),
    ],
};

/// `gold/fact_ed_visit`.
pub const FACT_ED_VISIT_SPEC: TableSpec = TableSpec {
    name: FACT_ED_VISIT,
    grain: "one encounter registered at the emergency department (`ARRIVAL`)",
    doc: "Emergency-department flow (contract §5.1), rebuilt with the patient's stays; a refresh rewrites only the files holding encounters it changed, waiting ones in a file of their own. An encounter with only an `ARRIVAL` is here and in no census. The outcome is as of the refresh: `admitted` (an `ADMIT` within 24 h of the arrival), `left_without_admission` (no `ADMIT` within 24 h, and the 24 h have passed or a `DISCHARGE` closed the encounter), otherwise `waiting`.",
    partition_by: &["arrival_month"],
    columns: &[
        c("encounter_id", Ty::Text, "the encounter"),
        c("patient_id", Ty::Text, "the source's patient id"),
        c("hospital_id", Ty::Int, "hospital number"),
        c(
            "department",
            Ty::Text,
            "department of the `ARRIVAL` (`Emergency`)",
        ),
        c("arrival_time", Ty::Timestamp, "the earliest `ARRIVAL`"),
        n(
            "admission_time",
            Ty::Timestamp,
            "the `ADMIT`; NULL if never admitted",
        ),
        n(
            "discharge_time",
            Ty::Timestamp,
            "a `DISCHARGE` of an encounter without `ADMIT` (left from the emergency department)",
        ),
        n(
            "wait_minutes",
            Ty::Double,
            "minutes from arrival to admission, to the discharge (left), or to the as-of time (waiting); NULL for one that left without a discharge",
        ),
        c(
            "outcome",
            Ty::Text,
            "`admitted`, `waiting` or `left_without_admission`, as of the refresh",
        ),
        c(
            "as_of",
            Ty::Timestamp,
            "as-of time of the refresh that last changed this encounter's row",
        ),
        c(
            "arrival_month",
            Ty::Int,
            "`yyyymm` of the arrival (partition)",
        ),
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
pub const GOLD_SPECS: [TableSpec; 7] = [
    DIM_DEPARTMENT_SPEC,
    DIM_PATIENT_SPEC,
    DIM_DATE_SPEC,
    FACT_ADMISSION_SPEC,
    FACT_STAY_SEGMENT_SPEC,
    FACT_CENSUS_HOURLY_SPEC,
    FACT_ED_VISIT_SPEC,
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
        ("fact_ed_visit", "fact_admission", "encounter_id"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_star_schema_doc_shows_the_tables_of_the_code() {
        let doc = include_str!("../../../docs/star-schema.md");
        assert!(
            doc.contains(&star_schema_markdown()),
            "docs/star-schema.md is stale: paste the output of `patientflow gold schema`"
        );
    }
}
