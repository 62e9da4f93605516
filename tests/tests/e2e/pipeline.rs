//! Producer → ingest → quality report, checked against the producer's ledger.

use patientflow_e2e::{ingest, produce, quality_report, scalar};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn quality_counts_equal_the_ledger_rule_by_rule_and_reingest_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    // Every defect kind of the ADT shape at a high rate, plus a flat batch for the flat-only
    // rules, in one landing folder.
    let adt = produce(
        &landing.join("adt"),
        100_000,
        &["--shape", "adt", "--dirty-rate", "0.12", "--seed", "11"],
    );
    let flat = produce(
        &landing.join("flat"),
        20_000,
        &["--shape", "flat", "--dirty-rate", "0.2", "--seed", "12"],
    );

    let summary = ingest(&landing, &data, &["--batch-records", "30000"]);
    let report = quality_report(&data);
    for key in ["records_in", "silver_rows", "quarantined", "duplicates"] {
        let expected = u(&adt[key]) + u(&flat[key]);
        assert_eq!(u(&report[key]), expected, "{key}");
        assert_eq!(u(&summary[key]), expected, "{key} in the ingest summary");
    }
    assert_eq!(u(&report["records_in"]), 120_000);
    assert_eq!(
        u(&report["records_in"]),
        u(&report["silver_rows"]) + u(&report["quarantined"]) + u(&report["duplicates"])
    );
    let rules = report["rules"].as_object().unwrap();
    for (rule, count) in rules {
        let expected = adt["rules"].get(rule).map_or(0, u) + flat["rules"].get(rule).map_or(0, u);
        assert_eq!(u(count), expected, "rule {rule}");
    }
    // Every defect kind really occurred.
    for ledger in [&adt, &flat] {
        for (rule, count) in ledger["rules"].as_object().unwrap() {
            assert!(u(count) > 0, "producer injected no {rule}");
        }
    }

    // The tables agree with the report.
    let silver = u(&report["silver_rows"]) as i64;
    let quarantined = u(&report["quarantined"]) as i64;
    assert_eq!(
        scalar(&data, "bronze/patient_events", "select count(*) from t"),
        120_000
    );
    assert_eq!(
        scalar(&data, "silver/patient_events", "select count(*) from t"),
        silver
    );
    assert_eq!(
        scalar(&data, "silver/quarantine", "select count(*) from t"),
        quarantined
    );
    assert_eq!(
        scalar(
            &data,
            "silver/patient_events",
            "select count(distinct dedupe_key) from t"
        ),
        silver,
        "silver holds no duplicates"
    );
    assert_eq!(
        scalar(
            &data,
            "silver/patient_events",
            "select count(*) from t where admission_time_corrected"
        ),
        u(&report["rules"]["future_admission_time"]) as i64
    );
    assert_eq!(
        scalar(
            &data,
            "silver/patient_events",
            "select count(*) from t where age is null"
        ),
        u(&report["rules"]["invalid_age"]) as i64,
        "the producer always sends an age, so NULL ages are exactly the invalid ones"
    );
    assert_eq!(
        scalar(
            &data,
            "silver/patient_events",
            "select count(*) from t where gender not in ('Male','Female') or department not in \
             ('Emergency','Surgery','ICU','Pediatrics','Maternity','Oncology','Cardiology')"
        ),
        0,
        "every gender and department is normalised"
    );
    assert_eq!(
        scalar(
            &data,
            "silver/quarantine",
            "select count(*) from t where raw_text = '' and cardinality(reasons) = 0"
        ),
        0
    );

    // Re-ingesting the same landing folder adds nothing anywhere.
    let again = ingest(&landing, &data, &[]);
    assert_eq!(u(&again["records_in"]), 0);
    assert_eq!(u(&again["bronze_batches"]), 0);
    assert_eq!(
        scalar(&data, "bronze/patient_events", "select count(*) from t"),
        120_000
    );
    assert_eq!(
        scalar(&data, "silver/patient_events", "select count(*) from t"),
        silver
    );
    assert_eq!(
        scalar(&data, "silver/quarantine", "select count(*) from t"),
        quarantined
    );
    let report_again = quality_report(&data);
    assert_eq!(report_again["records_in"], report["records_in"]);
}

#[test]
fn a_new_attribute_mid_stream_becomes_a_silver_column() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    // Two landing files, ingested in two runs: the attribute appears only in the second half.
    let ledger = produce(
        &landing,
        4_000,
        &[
            "--evolve-at",
            "0.5",
            "--records-per-file",
            "2000",
            "--dirty-rate",
            "0",
        ],
    );
    assert_eq!(ledger["records_in"], 4_000);
    let first = landing.join("events-000001.ndjson");
    ingest(&first, &data, &[]);
    assert_eq!(
        scalar(&data, "silver/patient_events", "select count(*) from t"),
        2_000
    );
    ingest(&landing, &data, &[]);
    assert_eq!(
        scalar(&data, "silver/patient_events", "select count(*) from t"),
        4_000
    );
    // Older rows read NULL, newer rows carry the value.
    assert_eq!(
        scalar(
            &data,
            "silver/patient_events",
            "select count(*) from t where insurance_type is null"
        ),
        2_000
    );
    assert_eq!(
        scalar(
            &data,
            "silver/patient_events",
            "select count(*) from t where insurance_type in ('Medicare','Medicaid','Private','Uninsured')"
        ),
        2_000
    );
}
