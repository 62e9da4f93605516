//! Bad input: a clear error or a quarantine row, never a panic or a lost record.

use std::io::Write;

use patientflow_e2e::{ingest, path, patientflow, quality_report, scalar};

const GOOD: &str = r#"{"event_id":"e-1","event_type":"ADMIT","event_time":"2026-11-24T09:15:02Z","encounter_id":"enc-1","patient_id":"p-1","hospital_id":3,"department":"ICU","bed_id":117,"gender":"Female","age":54}"#;

#[test]
fn every_kind_of_broken_line_is_quarantined_with_its_raw_text() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    std::fs::create_dir_all(&landing).unwrap();
    let mut f = std::fs::File::create(landing.join("a.ndjson")).unwrap();
    writeln!(f, "{GOOD}").unwrap();
    writeln!(f, "{{\"patient_id\": ").unwrap(); // malformed JSON
    writeln!(f, "[1,2,3]").unwrap(); // an array
    writeln!(f, "\"just a string\"").unwrap(); // a string
    f.write_all(b"{\"patient_id\":\"p\xff\xfe\"}\n").unwrap(); // invalid UTF-8
    writeln!(f).unwrap(); // an empty line
    let big = format!("{{\"notes\":\"{}", "x".repeat(10 * 1024 * 1024)); // 10 MB, broken
    writeln!(f, "{big}").unwrap();
    write!(f, "{{\"event_id\":\"e-2\",\"event_ty").unwrap(); // truncated last line, no newline
    drop(f);
    std::fs::write(landing.join("empty.ndjson"), b"").unwrap();

    let summary = ingest(&landing, &data, &[]);
    assert_eq!(summary["records_in"], 8);
    assert_eq!(summary["silver_rows"], 1);
    assert_eq!(summary["quarantined"], 7);
    assert_eq!(summary["rules"]["malformed_record"], 7);
    let report = quality_report(&data);
    assert_eq!(report["quarantined"], 7);
    assert_eq!(
        scalar(&data, "silver/quarantine", "select count(*) from t"),
        7
    );
    assert_eq!(
        scalar(
            &data,
            "silver/quarantine",
            "select max(length(raw_text)) from t"
        ),
        big.len() as i64,
        "the 10 MB line is kept whole"
    );
    assert_eq!(
        scalar(
            &data,
            "silver/quarantine",
            "select count(*) from t where raw_text = '[1,2,3]' and source_line = 3"
        ),
        1
    );
    assert_eq!(
        scalar(
            &data,
            "bronze/patient_events",
            "select count(*) from t where raw = X'7B2270617469656E745F6964223A2270FFFE227D'"
        ),
        1,
        "bronze keeps invalid UTF-8 byte for byte"
    );

    // Appending to the file later reads on from where the last run stopped: the truncated
    // line was consumed, the new line is a new record.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(landing.join("a.ndjson"))
        .unwrap();
    writeln!(f).unwrap();
    writeln!(f, "{}", GOOD.replace("e-1", "e-3")).unwrap();
    drop(f);
    let more = ingest(&landing, &data, &[]);
    assert_eq!(more["records_in"], 2, "an empty line and the new record");
    assert_eq!(
        scalar(&data, "silver/patient_events", "select count(*) from t"),
        2
    );
}

#[test]
fn unusable_paths_give_clear_errors_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("no-such-landing");
    let out = patientflow()
        .args(["ingest", "--from", path(&missing), "--data", path(&data)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-landing") && err.contains("check that the path exists"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // A dangling link where a landing file should be.
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone.ndjson"), landing.join("x.ndjson")).unwrap();
    let out = patientflow()
        .args(["ingest", "--from", path(&landing), "--data", path(&data)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("x.ndjson"), "{err}");

    // No table root anywhere.
    let out = patientflow()
        .args(["ingest", "--from", path(&landing)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PATIENTFLOW_DATA"));

    // A bad department file names the file and line.
    let csv = dir.path().join("departments.csv");
    std::fs::write(&csv, "hospital_id,hospital_name,department,bed_capacity,staff_count,effective_from\n1,A,ICU,many,3,2026-01-01\n").unwrap();
    let ok_landing = dir.path().join("ok");
    std::fs::create_dir_all(&ok_landing).unwrap();
    let out = patientflow()
        .args([
            "ingest",
            "--from",
            path(&ok_landing),
            "--data",
            path(&data),
            "--departments",
            path(&csv),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("departments.csv") && err.contains("line 2"),
        "{err}"
    );
}
