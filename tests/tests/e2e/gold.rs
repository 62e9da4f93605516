//! Gold: hand-computed stays and census, SCD type 2 scenarios, and the census against an
//! independent recomputation.

use std::path::Path;

use patientflow_e2e::{ingest, ingest_departments, path, rows, run_ok, scalar};

const AS_OF: &str = "2026-03-02T12:00:00Z";

const DEPARTMENTS: &str = "hospital_id,hospital_name,department,bed_capacity,staff_count,effective_from,aliases\n\
    1,Test General,Emergency,3,10,2026-01-01,ER;ED\n\
    1,Test General,Surgery,2,8,2026-01-01,\n\
    1,Test General,ICU,4,12,2026-01-01,\n";

fn write(path: &Path, lines: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn adt(
    id: &str,
    kind: &str,
    time: &str,
    enc: &str,
    patient: &str,
    dept: &str,
    extra: &str,
) -> String {
    format!(
        r#"{{"event_id":"{id}","event_type":"{kind}","event_time":"{time}","encounter_id":"{enc}","patient_id":"{patient}","hospital_id":1,"department":"{dept}"{extra}}}"#
    )
}

/// The hand-computed network: five stays with a transfer, an ED arrival, events out of order,
/// flat records, a stay still open and one whose planned discharge lies after the as-of time.
fn hand_computed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (landing, data) = (dir.join("landing"), dir.join("data"));
    let departments = dir.join("departments.csv");
    std::fs::write(&departments, DEPARTMENTS).unwrap();
    let p1 = r#","gender":"Female","age":70"#;
    let lines = [
        // E2's discharge arrives before its admission.
        adt("e2d", "DISCHARGE", "2026-03-02T10:00:00Z", "E2", "P2", "ICU", r#","gender":"m","age":30,"bed_id":302"#),
        adt("e1a", "ARRIVAL", "2026-03-01T08:00:00Z", "E1", "P1", "ER", p1),
        adt("e1b", "ADMIT", "2026-03-01T09:30:00Z", "E1", "P1", "Surgery", &format!("{p1},\"bed_id\":201")),
        adt("e1c", "TRANSFER", "2026-03-01T12:00:00Z", "E1", "P1", "ICU", &format!("{p1},\"bed_id\":301")),
        adt("e1d", "DISCHARGE", "2026-03-01T15:15:00Z", "E1", "P1", "ICU", p1),
        // A duplicate of E1's transfer: dropped in silver.
        adt("e1c", "TRANSFER", "2026-03-01T12:00:00Z", "E1", "P1", "ICU", &format!("{p1},\"bed_id\":301")),
        adt("e2a", "ADMIT", "2026-03-01T10:00:00Z", "E2", "P2", "icu", r#","gender":"m","age":30,"bed_id":302"#),
        adt("e3a", "ADMIT", "2026-03-01T23:00:00Z", "E3", "P3", "Surgery", r#","gender":"F","age":10,"bed_id":202"#),
        r#"{"patient_id":"P4","gender":"Male","age":85,"department":"Emergency","admission_time":"2026-03-01T11:00:00","discharge_time":"2026-03-01T13:30:00","bed_id":101,"hospital_id":1}"#.to_string(),
        r#"{"patient_id":"P5","gender":"Female","age":50,"department":"ICU","admission_time":"2026-03-02T08:00:00","discharge_time":"2026-03-03T08:00:00","bed_id":303,"hospital_id":1}"#.to_string(),
        // Quarantined: not a JSON object.
        "[1,2,3]".to_string(),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    write(&landing.join("a.ndjson"), &refs);
    // The site's department file first (as a daily batch), then the events.
    ingest_departments(&data, &departments);
    ingest(&landing, &data, &["--as-of", AS_OF]);
    (landing, data)
}

#[test]
fn facts_equal_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = hand_computed(dir.path());
    let fact = [("f", "gold/fact_admission")];
    assert_eq!(
        rows(
            &data,
            &fact,
            "select stay_key, department, discharge_department, bed_id, \
             cast(admission_time as varchar) as admitted, cast(discharge_time as varchar) as discharged, \
             length_of_stay_hours, is_currently_admitted, age_at_admission, ed_wait_minutes, transfers, \
             admission_date_key, discharge_date_key \
             from f order by admission_time"
        ),
        vec![
            "E1|Surgery|ICU|201|2026-03-01T09:30:00Z|2026-03-01T15:15:00Z|5.75|false|70|90.0|1|20260301|20260301",
            "E2|ICU|ICU|302|2026-03-01T10:00:00Z|2026-03-02T10:00:00Z|24.0|false|30|NULL|0|20260301|20260302",
            "flat:P4:1:1772362800000000|Emergency|Emergency|101|2026-03-01T11:00:00Z|2026-03-01T13:30:00Z|2.5|false|85|NULL|0|20260301|20260301",
            "E3|Surgery|Surgery|202|2026-03-01T23:00:00Z|NULL|NULL|true|10|NULL|0|20260301|NULL",
            "flat:P5:1:1772438400000000|ICU|ICU|303|2026-03-02T08:00:00Z|NULL|NULL|true|50|NULL|0|20260302|NULL",
        ]
    );
    // Every stay points at the patient and department versions in force at admission.
    let joined = [
        ("f", "gold/fact_admission"),
        ("p", "gold/dim_patient"),
        ("d", "gold/dim_department"),
    ];
    assert_eq!(
        rows(
            &data,
            &joined,
            "select f.stay_key, p.gender, d.bed_capacity from f \
             join p on f.patient_sk = p.patient_sk join d on f.department_sk = d.department_sk \
             order by f.admission_time"
        ),
        vec![
            "E1|Female|2",
            "E2|Male|4",
            "flat:P4:1:1772362800000000|Male|3",
            "E3|Female|2",
            "flat:P5:1:1772438400000000|Female|4"
        ]
    );
    // ALOS of stays discharged on 1 March: (5.75 + 2.5) / 2.
    assert_eq!(
        rows(
            &data,
            &fact,
            "select avg(length_of_stay_hours) from f where discharge_date_key = 20260301"
        ),
        vec!["4.125"]
    );
}

#[test]
fn census_equals_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = hand_computed(dir.path());
    let c = [("c", "gold/fact_census_hourly")];
    let at = |hour: &str, dept: &str| {
        rows(
            &data,
            &c,
            &format!(
                "select census, bed_capacity, occupancy_rate, occupied_bed_hours, admissions, discharges \
                 from c where hour_start = timestamp '{hour}' and hospital_id = 1 and department = '{dept}'"
            ),
        )
        .join(";")
    };
    assert_eq!(at("2026-03-01T10:00:00Z", "Surgery"), "1|2|0.5|1.0|0|0");
    assert_eq!(at("2026-03-01T09:00:00Z", "Surgery"), "0|2|0.0|0.5|1|0");
    assert_eq!(at("2026-03-01T12:00:00Z", "Surgery"), "0|2|0.0|0.0|0|0");
    assert_eq!(
        at("2026-03-01T12:00:00Z", "Emergency"),
        "1|3|0.3333333333333333|1.0|0|0"
    );
    assert_eq!(at("2026-03-01T13:00:00Z", "ICU"), "2|4|0.5|2.0|0|0");
    assert_eq!(at("2026-03-01T15:00:00Z", "ICU"), "2|4|0.5|1.25|0|1");
    assert_eq!(at("2026-03-02T00:00:00Z", "Surgery"), "1|2|0.5|1.0|0|0");
    assert_eq!(at("2026-03-02T09:00:00Z", "ICU"), "2|4|0.5|2.0|0|0");
    assert_eq!(at("2026-03-02T10:00:00Z", "ICU"), "1|4|0.25|1.0|0|1");
    // Hours from the first admission's day to the as-of hour, for every department.
    assert_eq!(
        scalar(
            &data,
            "gold/fact_census_hourly",
            "select count(*) from t where hospital_id = 1 and department in ('Emergency', 'Surgery', 'ICU')"
        ),
        (24 + 13) * 3
    );
    assert_eq!(
        rows(
            &data,
            &c,
            "select date_key, sum(admissions), sum(discharges) from c group by date_key order by date_key"
        ),
        vec!["20260301|4|2", "20260302|1|1"]
    );
    // Re-running with nothing new is a no-op.
    let out = run_ok(&[
        "gold",
        "refresh",
        "--data",
        path(&data),
        "--as-of",
        AS_OF,
        "--format",
        "json",
    ]);
    assert!(out.contains("\"unchanged\":true"), "{out}");
}

#[test]
fn patient_versions_follow_event_time_through_changes_duplicates_and_late_events() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    let base = r#","gender":"Female","age":60"#;
    let step = |file: &str, lines: &[String]| {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        write(&landing.join(file), &refs);
        ingest(&landing, &data, &["--as-of", AS_OF])
    };
    let versions = || {
        rows(
            &data,
            &[("p", "gold/dim_patient")],
            "select cast(valid_from as varchar) as f, cast(valid_to as varchar) as t, is_current, gender, insurance_type \
             from p where patient_id = 'Q' order by valid_from",
        )
    };
    step(
        "1.ndjson",
        &[
            adt(
                "q1",
                "ADMIT",
                "2026-02-01T00:00:00Z",
                "EQ",
                "Q",
                "ICU",
                base,
            ),
            adt(
                "q2",
                "DISCHARGE",
                "2026-02-02T00:00:00Z",
                "EQ",
                "Q",
                "ICU",
                base,
            ),
        ],
    );
    // A schema-evolved attribute arrives: a column, and a version from its event time.
    let update = adt(
        "q3",
        "UPDATE",
        "2026-02-05T00:00:00Z",
        "EQ",
        "Q",
        "ICU",
        &format!("{base},\"insurance_type\":\"Medicare\""),
    );
    step("2.ndjson", std::slice::from_ref(&update));
    let after_change = vec![
        "2026-02-01T00:00:00Z|2026-02-05T00:00:00Z|false|Female|NULL",
        "2026-02-05T00:00:00Z|NULL|true|Female|Medicare",
    ];
    assert_eq!(versions(), after_change);
    // The same batch again (another file, same events): duplicates, nothing changes.
    let summary = step("3.ndjson", std::slice::from_ref(&update));
    assert_eq!(summary["duplicates"], 1);
    assert_eq!(versions(), after_change);
    // No change: a record restating the current values opens no version.
    step(
        "4.ndjson",
        &[adt(
            "q4",
            "UPDATE",
            "2026-02-06T00:00:00Z",
            "EQ",
            "Q",
            "ICU",
            &format!("{base},\"insurance_type\":\"Medicare\""),
        )],
    );
    assert_eq!(versions(), after_change);
    // A late event inserts its version into the past; the current version stays.
    step(
        "5.ndjson",
        &[adt(
            "q5",
            "UPDATE",
            "2026-02-03T00:00:00Z",
            "EQ",
            "Q",
            "ICU",
            &format!("{base},\"insurance_type\":\"Private\""),
        )],
    );
    assert_eq!(
        versions(),
        vec![
            "2026-02-01T00:00:00Z|2026-02-03T00:00:00Z|false|Female|NULL",
            "2026-02-03T00:00:00Z|2026-02-05T00:00:00Z|false|Female|Private",
            "2026-02-05T00:00:00Z|NULL|true|Female|Medicare",
        ]
    );
    // The stay still points at the version in force at its admission.
    assert_eq!(
        rows(
            &data,
            &[("f", "gold/fact_admission"), ("p", "gold/dim_patient")],
            "select cast(p.valid_from as varchar) as f from f join p on f.patient_sk = p.patient_sk"
        ),
        vec!["2026-02-01T00:00:00Z"]
    );
}

#[test]
fn department_versions_open_on_capacity_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = hand_computed(dir.path());
    let v2 = dir.path().join("departments-v2.csv");
    // ICU grows to 6 beds from 2 March; Surgery restates the same capacity under a new date.
    std::fs::write(
        &v2,
        format!("{DEPARTMENTS}1,Test General,ICU,6,12,2026-03-02,\n1,Test General,Surgery,2,8,2026-03-02,\n"),
    )
    .unwrap();
    let refresh = |csv: &Path| {
        run_ok(&[
            "ingest",
            "batch",
            "--data",
            path(&data),
            "--departments",
            path(csv),
            "--as-of",
            AS_OF,
            "--format",
            "json",
        ])
    };
    refresh(&v2);
    let versions = || {
        rows(
            &data,
            &[("d", "gold/dim_department")],
            "select department, bed_capacity, cast(valid_from as varchar) as f, cast(valid_to as varchar) as t, is_current \
             from d where hospital_id = 1 and department in ('Emergency', 'Surgery', 'ICU') \
             order by department, valid_from",
        )
    };
    let expected = vec![
        "Emergency|3|2026-01-01T00:00:00Z|NULL|true",
        "ICU|4|2026-01-01T00:00:00Z|2026-03-02T00:00:00Z|false",
        "ICU|6|2026-03-02T00:00:00Z|NULL|true",
        "Surgery|2|2026-01-01T00:00:00Z|NULL|true",
    ];
    assert_eq!(versions(), expected);
    // The census takes the capacity of the version in force at each hour.
    let cap = |hour: &str| {
        rows(
            &data,
            &[("c", "gold/fact_census_hourly")],
            &format!(
                "select bed_capacity from c where hospital_id = 1 and department = 'ICU' and hour_start = timestamp '{hour}'"
            ),
        )
    };
    assert_eq!(cap("2026-03-01T23:00:00Z"), vec!["4"]);
    assert_eq!(cap("2026-03-02T09:00:00Z"), vec!["6"]);
    // The same file again changes nothing: bronze recognises its content.
    let out = refresh(&v2);
    assert!(out.contains("\"files_unchanged\":1"), "{out}");
    assert!(out.contains("\"unchanged\":true"), "{out}");
    assert_eq!(versions(), expected);
}

/// Writes a one-row-group Parquet file of text columns.
fn write_parquet(path: &Path, columns: &[(&str, &[&str])]) {
    use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray};
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter(columns.iter().map(|(name, values)| {
        (
            *name,
            Arc::new(StringArray::from(values.to_vec())) as ArrayRef,
        )
    }))
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        deltalake::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn ehr_extracts_update_patient_versions_and_bad_rows_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = hand_computed(dir.path());
    let csv = dir.path().join("ehr.csv");
    std::fs::write(
        &csv,
        "patient_id,gender,age,updated_at,insurance_type,language\n\
         P1,F,70,2026-03-01T10:00:00Z,Medicare,en\n\
         P2,M,30,2026-02-15T00:00:00Z,Private,\n\
         ,F,40,,,\n\
         P3,F,abc,,,\n\
         P4,M,85,yesterday,,\n\
         P5,F,50\n\
         P1,F,70,2026-03-01T10:00:00Z,Medicare,en\n",
    )
    .unwrap();
    let parquet = dir.path().join("ehr.parquet");
    write_parquet(
        &parquet,
        &[
            ("patient_id", &["P4"]),
            ("gender", &["Male"]),
            ("age", &["86"]),
            ("updated_at", &["2026-03-01T12:00:00Z"]),
            ("insurance_type", &["Medicaid"]),
        ],
    );
    let batch = |files: &[&Path]| {
        let mut args = vec![
            "ingest",
            "batch",
            "--data",
            path(&data),
            "--as-of",
            AS_OF,
            "--format",
            "json",
        ];
        for f in files {
            args.extend(["--ehr", path(f)]);
        }
        patientflow_e2e::parse_json(&run_ok(&args))
    };
    let out = batch(&[&csv, &parquet]);
    let ehr = &out["datasets"]["ehr_patients"];
    assert_eq!(
        (
            ehr["records_in"].as_u64(),
            ehr["silver_rows"].as_u64(),
            ehr["quarantined"].as_u64(),
            ehr["duplicates"].as_u64()
        ),
        (Some(8), Some(4), Some(3), Some(1)),
        "{out}"
    );
    for (rule, n) in [
        ("malformed_record", 1),
        ("missing_patient_id", 1),
        ("invalid_timestamp", 1),
        ("invalid_age", 1),
        ("duplicate_row", 1),
    ] {
        assert_eq!(ehr["rules"][rule], n, "{rule}: {out}");
    }
    // Quarantined rows keep their raw text and reasons.
    assert_eq!(
        rows(
            &data,
            &[("q", "silver/quarantine")],
            "select raw_text, array_to_string(reasons, ',') as r from q where record_kind = 'ehr_patients' order by source_line"
        ),
        vec![
            ",F,40,,,|missing_patient_id",
            "P4,M,85,yesterday,,|invalid_timestamp",
            "P5,F,50|malformed_record"
        ]
    );
    // New attributes become silver columns; the tracked one versions the patient.
    let versions = |patient: &str| {
        rows(
            &data,
            &[("p", "gold/dim_patient")],
            &format!(
                "select cast(valid_from as varchar) as f, is_current, gender, insurance_type \
                 from p where patient_id = '{patient}' order by valid_from"
            ),
        )
    };
    assert_eq!(
        versions("P1"),
        vec![
            "2026-03-01T08:00:00Z|false|Female|NULL",
            "2026-03-01T10:00:00Z|true|Female|Medicare"
        ]
    );
    // A late extract row opens the first version; the admission restates nothing new.
    assert_eq!(
        versions("P2"),
        vec!["2026-02-15T00:00:00Z|true|Male|Private"]
    );
    assert_eq!(
        versions("P4"),
        vec![
            "2026-03-01T11:00:00Z|false|Male|NULL",
            "2026-03-01T12:00:00Z|true|Male|Medicaid"
        ]
    );
    assert_eq!(
        scalar(
            &data,
            "silver/ehr_patients",
            "select count(*) from t where language = 'en'"
        ),
        1
    );
    // The same files again add nothing.
    let again = batch(&[&csv, &parquet]);
    assert_eq!(again["files_unchanged"], 2, "{again}");
    assert_eq!(
        scalar(&data, "bronze/ehr_patients", "select count(*) from t"),
        8 + 1
    );
    let report = patientflow_e2e::quality_report(&data);
    assert_eq!(
        report["datasets"]["ehr_patients"]["records_in"], 8,
        "{report}"
    );
    assert_eq!(
        report["datasets"]["departments"]["records_in"], 3,
        "{report}"
    );
}
