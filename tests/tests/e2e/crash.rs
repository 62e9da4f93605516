//! SIGKILL at different points of an ingest, then a restart: exact counts, nothing twice.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use patientflow_e2e::{
    assert_report_matches_ledger, ingest, path, patientflow, produce, quality_report, scalar,
};

/// Commit files in a table's `_delta_log`.
fn commits(data: &Path, table: &str) -> usize {
    std::fs::read_dir(data.join(table).join("_delta_log"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn ingest_killed_at_several_points_ends_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let ledger = produce(
        &landing,
        40_000,
        &["--dirty-rate", "0.1", "--records-per-file", "7000"],
    );

    // Kill points: once bronze has its k-th commit, once silver has, once quality has, and
    // after a plain delay — each a fresh table root, each restarted to completion.
    let points: [(&str, usize); 4] = [
        ("bronze/patient_events", 2),
        ("silver/patient_events", 3),
        ("ops/quality_runs", 5),
        ("", 0),
    ];
    for (i, (table, k)) in points.iter().enumerate() {
        let data = dir.path().join(format!("data-{i}"));
        let mut child = patientflow()
            .args([
                "ingest",
                "--from",
                path(&landing),
                "--data",
                path(&data),
                "--batch-records",
                "2500",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            let reached = if table.is_empty() {
                started.elapsed() >= Duration::from_millis(700)
            } else {
                commits(&data, table) >= *k
            };
            if reached || started.elapsed() > Duration::from_secs(120) {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();

        let resumed = ingest(&landing, &data, &[]);
        assert!(resumed["records_in"].as_u64().is_some());
        let report = quality_report(&data);
        assert_report_matches_ledger(&report, &ledger, &format!("kill point {i}: {table} #{k}"));
        assert_eq!(
            scalar(&data, "bronze/patient_events", "select count(*) from t"),
            40_000
        );
        assert_eq!(
            scalar(
                &data,
                "bronze/patient_events",
                "select count(distinct concat(source, ':', source_line)) from t"
            ),
            40_000,
            "no source position landed twice"
        );
        assert_eq!(
            scalar(&data, "silver/patient_events", "select count(*) from t"),
            ledger["silver_rows"].as_i64().unwrap()
        );
        assert_eq!(
            scalar(&data, "silver/quarantine", "select count(*) from t"),
            ledger["quarantined"].as_i64().unwrap()
        );
    }
}

#[test]
fn a_second_ingest_on_the_same_root_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let data = dir.path().join("data");
    produce(&landing, 30_000, &[]);
    let mut first = patientflow()
        .args([
            "ingest",
            "--from",
            path(&landing),
            "--data",
            path(&data),
            "--batch-records",
            "1000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first process holds the lock and has committed something.
    let started = Instant::now();
    while commits(&data, "bronze/patient_events") < 1 && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = patientflow()
        .args(["ingest", "--from", path(&landing), "--data", path(&data)])
        .output()
        .unwrap();
    let still_running = first.try_wait().unwrap().is_none();
    first.wait().unwrap();
    assert!(
        still_running,
        "the first ingest finished before the second started"
    );
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another patientflow process is writing"),
        "{err}"
    );
    // The refused run changed nothing; finishing the ingest gives exact counts.
    ingest(&landing, &data, &[]);
    let report = quality_report(&data);
    assert_eq!(report["records_in"], 30_000);
    assert_eq!(
        scalar(&data, "bronze/patient_events", "select count(*) from t"),
        30_000
    );
}
