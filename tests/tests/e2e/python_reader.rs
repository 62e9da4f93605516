//! The tables read correctly with independent readers: Python `deltalake` (delta-rs's Python
//! binding, a separate build) and DuckDB over its Arrow, in the venv that `.ci/setup` makes.

use std::path::Path;

use patientflow_e2e::{ingest, path, produce, python_json, scalar};
use serde_json::Value;

/// Every table a pipeline run writes.
pub(crate) const TABLES: [&str; 11] = [
    "bronze/patient_events",
    "silver/patient_events",
    "silver/quarantine",
    "ops/quality_runs",
    "gold/dim_department",
    "gold/dim_patient",
    "gold/dim_date",
    "gold/fact_admission",
    "gold/fact_stay_segment",
    "gold/fact_census_hourly",
    "gold/fact_ed_visit",
];

const READERS: &str = r#"
import json, sys
import duckdb
from deltalake import DeltaTable
root = sys.argv[1]
out = {}
for name in sys.argv[2:]:
    dt = DeltaTable(f"{root}/{name}")
    arrow = dt.to_pyarrow_table()
    p = dt.protocol()
    out[name] = {"rows": arrow.num_rows,
                 "duckdb_rows": duckdb.sql("select count(*) from arrow").fetchall()[0][0],
                 "columns": arrow.column_names,
                 "protocol": [p.min_reader_version, p.min_writer_version],
                 "features": [p.reader_features, p.writer_features],
                 "partitions": dt.metadata().partition_columns}
print(json.dumps(out))
"#;

/// Reads `tables` under `data` with Python `deltalake` and DuckDB, asserts both see the rows
/// patientflow sees and that every table is Delta Lake 1.0 (reader 1, writer 2, no
/// features: what Synapse serverless reads), and returns what they saw per table.
pub(crate) fn assert_independent_readers_agree(data: &Path, tables: &[&str]) -> Value {
    let args: Vec<&str> = std::iter::once(path(data))
        .chain(tables.iter().copied())
        .collect();
    let v = python_json(READERS, &args);
    for table in tables {
        assert_eq!(v[table]["protocol"], serde_json::json!([1, 2]), "{table}");
        assert_eq!(
            v[table]["features"],
            serde_json::json!([null, null]),
            "{table}"
        );
        assert_eq!(v[table]["rows"], v[table]["duckdb_rows"], "{table}");
        assert_eq!(
            v[table]["rows"].as_i64().unwrap(),
            scalar(data, table, "select count(*) from t"),
            "{table}"
        );
    }
    v
}

const SILVER: &str = r#"
import json, sys
from deltalake import DeltaTable
root = sys.argv[1]
silver = DeltaTable(f"{root}/silver/patient_events").to_pyarrow_table()
print(json.dumps({
    "insurance_nulls": silver.column("insurance_type").null_count,
    "genders": sorted(set(silver.column("gender").to_pylist())),
    "first_raw_is_bytes": isinstance(
        DeltaTable(f"{root}/bronze/patient_events").to_pyarrow_table().column("raw")[0].as_py(),
        bytes),
}))
"#;

#[test]
fn python_deltalake_and_duckdb_read_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    let ledger = produce(&landing, 5_000, &["--evolve-at", "0.5"]);
    ingest(&landing, &data, &[]);
    let v = assert_independent_readers_agree(&data, &TABLES);
    assert_eq!(v["bronze/patient_events"]["rows"], 5_000);
    assert_eq!(v["silver/patient_events"]["rows"], ledger["silver_rows"]);
    assert_eq!(v["silver/quarantine"]["rows"], ledger["quarantined"]);
    assert!(v["ops/quality_runs"]["rows"].as_u64().unwrap() > 0);
    for (table, partitions) in [
        ("gold/fact_admission", "admission_month"),
        ("gold/fact_stay_segment", "admission_month"),
        ("gold/fact_ed_visit", "arrival_month"),
        ("gold/dim_patient", "first_seen_month"),
        ("gold/fact_census_hourly", "month_key"),
    ] {
        assert_eq!(
            v[table]["partitions"],
            serde_json::json!([partitions]),
            "{table}"
        );
    }
    assert!(v["gold/fact_admission"]["rows"].as_u64().unwrap() > 500);
    let columns = v["silver/patient_events"]["columns"].as_array().unwrap();
    assert!(columns.contains(&"insurance_type".into()));

    let silver = python_json(SILVER, &[path(&data)]);
    let nulls = silver["insurance_nulls"].as_u64().unwrap();
    assert!(
        nulls > 1_000 && nulls < 4_000,
        "about half the rows predate the attribute: {nulls}"
    );
    assert_eq!(silver["genders"], serde_json::json!(["Female", "Male"]));
    assert_eq!(silver["first_raw_is_bytes"], true);
}
