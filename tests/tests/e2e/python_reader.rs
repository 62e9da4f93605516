//! The tables read correctly with an independent reader: Python `deltalake` (delta-rs's
//! Python binding, a separate build) in the venv that `.ci/setup` makes.

use patientflow_e2e::{ingest, path, produce, python_json, scalar};

/// Every table patientflow writes.
const TABLES: [&str; 10] = [
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
];

const READER: &str = r#"
import json, sys
from deltalake import DeltaTable
root = sys.argv[1]
out = {}
for name in sys.argv[2:]:
    dt = DeltaTable(f"{root}/{name}")
    t = dt.to_pyarrow_table()
    p = dt.protocol()
    out[name] = {"rows": t.num_rows, "columns": t.column_names,
                 "protocol": [p.min_reader_version, p.min_writer_version],
                 "features": [p.reader_features, p.writer_features],
                 "partitions": dt.metadata().partition_columns}
silver = DeltaTable(f"{root}/silver/patient_events").to_pyarrow_table()
out["insurance_nulls"] = silver.column("insurance_type").null_count
out["genders"] = sorted(set(silver.column("gender").to_pylist()))
out["first_raw_is_bytes"] = isinstance(
    DeltaTable(f"{root}/bronze/patient_events").to_pyarrow_table().column("raw")[0].as_py(), bytes)
print(json.dumps(out))
"#;

#[test]
fn python_deltalake_reads_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    let ledger = produce(&landing, 5_000, &["--evolve-at", "0.5"]);
    ingest(&landing, &data, &[]);
    let args: Vec<&str> = std::iter::once(path(&data)).chain(TABLES).collect();
    let v = python_json(READER, &args);
    assert_eq!(v["bronze/patient_events"]["rows"], 5_000);
    assert_eq!(v["silver/patient_events"]["rows"], ledger["silver_rows"]);
    assert_eq!(v["silver/quarantine"]["rows"], ledger["quarantined"]);
    assert!(v["ops/quality_runs"]["rows"].as_u64().unwrap() > 0);
    // Delta Lake 1.0 tables (what Synapse serverless reads): reader 1, writer 2, no features.
    for table in TABLES {
        assert_eq!(v[table]["protocol"], serde_json::json!([1, 2]), "{table}");
        assert_eq!(
            v[table]["features"],
            serde_json::json!([null, null]),
            "{table}"
        );
        assert_eq!(
            v[table]["rows"].as_i64().unwrap(),
            scalar(&data, table, "select count(*) from t"),
            "{table}"
        );
    }
    assert_eq!(
        v["gold/fact_admission"]["partitions"],
        serde_json::json!(["admission_month"])
    );
    assert_eq!(
        v["gold/fact_census_hourly"]["partitions"],
        serde_json::json!(["month_key"])
    );
    assert!(v["gold/fact_admission"]["rows"].as_u64().unwrap() > 500);
    let columns = v["silver/patient_events"]["columns"].as_array().unwrap();
    assert!(columns.contains(&"insurance_type".into()));
    let nulls = v["insurance_nulls"].as_u64().unwrap();
    assert!(
        nulls > 1_000 && nulls < 4_000,
        "about half the rows predate the attribute: {nulls}"
    );
    assert_eq!(v["genders"], serde_json::json!(["Female", "Male"]));
    assert_eq!(v["first_raw_is_bytes"], true);
}
