//! Faults over the real binary: a corrupt Delta log entry, a data file deleted under the
//! server, a table root that disappears, a full disk during ingest, an object store that
//! stops. Each gives a clear error at the door it reaches, never a panic of ours; the server
//! keeps serving what it can; ingest resumes exactly once when the fault clears.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patientflow_e2e::{
    Azurite, Server, assert_report_matches_ledger, path, patientflow, produce, python_json,
    quality_report, scalar, wait_for,
};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::load::FLIGHT_QUERY;
use crate::serve::{get, network, post};

fn sql(client: &Client, server: &Server, sql: &str) -> (u16, Value) {
    post(client, &server.url("/api/v1/sql"), &json!({ "sql": sql }))
}

/// The one integer a successful count answers.
fn count(client: &Client, server: &Server, table: &str) -> i64 {
    let (status, body) = sql(
        client,
        server,
        &format!("SELECT count(*) AS n FROM {table}"),
    );
    assert_eq!(status, 200, "{table}: {body}");
    body["rows"][0]["n"].as_i64().unwrap()
}

/// A 503 that names the storage fault and says the rest still answers.
fn assert_storage_fault(answer: &(u16, Value), table: &str, cause: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 503, "{body}");
    assert_eq!(body["code"], "storage_unavailable", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("table {table} cannot be read")),
        "{message}"
    );
    assert!(message.contains(cause), "{cause}: {message}");
    assert!(message.contains("other tables still answer"), "{message}");
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, extension));
        } else if p.extension().is_some_and(|e| e == extension) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Panics logged by the server or ingest that come from patientflow's own code.
fn own_panics(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("panic at ") || l.contains("panicked at "))
        .filter(|l| !l.contains("/.cargo/registry/"))
        .collect()
}

#[test]
fn storage_faults_under_the_server_answer_503_and_the_other_tables_keep_answering() {
    let dir = tempfile::tempdir().unwrap();
    let data = network(dir.path(), "31");
    let log = dir.path().join("serve.log");
    let server = Server::start_logged(&data, &["--log", "warn,patientflow=info"], &log);
    let client = server.client();
    let patients = count(&client, &server, "gold.dim_patient");
    let admissions = count(&client, &server, "gold.fact_admission");
    let segments = count(&client, &server, "gold.fact_stay_segment");

    // A truncated commit in dim_patient's log (as a crashed writer on a non-atomic store
    // leaves it): that table fails, the others answer.
    let commits = files(&data.join("gold/dim_patient/_delta_log"), "json");
    let last = commits.last().unwrap();
    let whole = std::fs::read(last).unwrap();
    std::fs::write(last, &whole[..whole.len() / 2]).unwrap();
    // A new commit file: the catalog reads it on the next query.
    let next = last.with_file_name(format!("{:020}.json", commits.len()));
    std::fs::write(&next, b"{\"commitInfo\":{\"timestamp\":").unwrap();
    let damaged = sql(&client, &server, "SELECT count(*) FROM gold.dim_patient");
    assert_storage_fault(&damaged, "gold.dim_patient", "Delta log cannot be read");
    assert_eq!(count(&client, &server, "gold.fact_admission"), admissions);
    let (status, _) = get(&client, &server.url("/api/v1/kpis/census"));
    assert_eq!(status, 200);
    std::fs::remove_file(&next).unwrap();
    std::fs::write(last, &whole).unwrap();
    assert_eq!(count(&client, &server, "gold.dim_patient"), patients);

    // A data file deleted under the server (as a VACUUM with too short a retention does).
    let parquet = files(&data.join("gold/fact_stay_segment"), "parquet");
    let victim = &parquet[0];
    let bytes = std::fs::read(victim).unwrap();
    std::fs::remove_file(victim).unwrap();
    let missing = sql(
        &client,
        &server,
        "SELECT count(DISTINCT patient_id) FROM gold.fact_stay_segment",
    );
    assert_eq!(missing.0, 503, "{}", missing.1);
    assert_eq!(missing.1["code"], "storage_unavailable");
    assert!(
        missing.1["message"]
            .as_str()
            .unwrap()
            .contains("data files is missing"),
        "{}",
        missing.1
    );
    assert_eq!(count(&client, &server, "gold.dim_patient"), patients);
    std::fs::write(victim, &bytes).unwrap();
    assert_eq!(count(&client, &server, "gold.fact_stay_segment"), segments);

    // The whole table root disappears (an unmounted volume).
    let moved = dir.path().join("moved");
    std::fs::rename(&data, &moved).unwrap();
    let gone = sql(&client, &server, "SELECT count(*) FROM gold.fact_ed_visit");
    assert_storage_fault(
        &gone,
        "gold.fact_ed_visit",
        "storage is gone or unreachable",
    );
    let flight = python_json(
        FLIGHT_QUERY,
        &[
            &format!("grpc://{}", server.flight),
            &server.token,
            "SELECT count(*) FROM gold.fact_ed_visit",
        ],
    );
    let error = flight["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("UNAVAILABLE") || error.contains("Unavailable"),
        "{flight}"
    );
    assert!(
        error.contains("gold.fact_ed_visit cannot be read"),
        "{flight}"
    );
    // Liveness holds, readiness does not, while the root is away.
    let health = client.get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // Back: everything answers again, without a restart.
    std::fs::rename(&moved, &data).unwrap();
    assert!(count(&client, &server, "gold.fact_ed_visit") > 0);
    assert_eq!(count(&client, &server, "gold.dim_patient"), patients);
    drop(server);

    let log = std::fs::read_to_string(&log).unwrap();
    assert!(own_panics(&log).is_empty(), "{log}");
    assert!(log.contains("storage failed under a query"), "{log}");
}

/// Mounts a tmpfs of `mib` MiB at `dir` (the tests run as root, as CI does).
fn mount_tmpfs(dir: &Path, mib: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let status = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m"),
            "tmpfs",
            path(dir),
        ])
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "cannot mount a tmpfs at {}",
        dir.display()
    );
}

/// Unmounts it when dropped, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_ingest_with_what_to_do_and_the_rerun_lands_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let ledger = produce(&landing, 20_000, &["--seed", "33", "--dirty-rate", "0.05"]);
    let disk = dir.path().join("disk");
    // About half of what the tables need.
    mount_tmpfs(&disk, 4);
    let _mounted = Mounted(disk.clone());
    let data = disk.join("data");
    let ingest = || {
        patientflow()
            .args(["ingest", "--from", path(&landing), "--data", path(&data)])
            .args(["--batch-records", "5000", "--format", "json"])
            .output()
            .unwrap()
    };

    let full = ingest();
    assert_eq!(full.status.code(), Some(1), "a clean failure, not a crash");
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains("hint: the disk under the table root is full"),
        "{stderr}"
    );
    assert!(own_panics(&stderr).is_empty(), "{stderr}");

    // Space comes back: the same command finishes the work, nothing twice.
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=256m", path(&disk)])
        .status()
        .unwrap();
    assert!(grown.success());
    let rerun = ingest();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let bronze = scalar(&data, "bronze/patient_events", "SELECT count(*) FROM t");
    assert_eq!(Value::from(bronze), ledger["records_in"]);
    let silver = scalar(&data, "silver/patient_events", "SELECT count(*) FROM t");
    assert_eq!(Value::from(silver), ledger["silver_rows"]);
    let quarantine = scalar(&data, "silver/quarantine", "SELECT count(*) FROM t");
    assert_eq!(Value::from(quarantine), ledger["quarantined"]);
    let report = quality_report(&data);
    assert_report_matches_ledger(&report, &ledger, "after the disk filled");
    assert!(scalar(&data, "gold/fact_admission", "SELECT count(*) FROM t") > 0);
}

#[test]
fn an_object_store_that_stops_gives_clear_errors_ingest_resumes_once_and_shutdown_is_bounded() {
    let mut azurite = Azurite::start("lake");
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let ledger = produce(
        &landing,
        4_000,
        &["--seed", "34", "--records-per-file", "2000"],
    );
    let root = "az://lake/patientflow";
    // The first file lands; the second waits for later.
    let later = dir.path().join("later");
    std::fs::create_dir_all(&later).unwrap();
    let second = landing.join("events-000002.ndjson");
    std::fs::rename(&second, later.join("events-000002.ndjson")).unwrap();
    let ingest = |azurite: &Azurite| {
        azurite.run(&[
            "ingest",
            "--from",
            path(&landing),
            "--data",
            root,
            "--format",
            "json",
        ])
    };
    let first = ingest(&azurite);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let log = dir.path().join("serve.log");
    let mut command = patientflow();
    command
        .args(["serve", "--data", root, "--log", "warn,patientflow=info"])
        .envs(azurite.env())
        .stderr(std::fs::File::create(&log).unwrap());
    let server = Server::start_command(command, dir.path());
    let client = server.client();
    let admissions = count(&client, &server, "gold.fact_admission");
    assert!(admissions > 0);

    // Storage stops: a query of a table not read yet gets a clear 503 in bounded time, and
    // ingest fails with the cause.
    azurite.stop();
    let started = Instant::now();
    let answer = sql(&client, &server, "SELECT count(*) FROM gold.fact_ed_visit");
    assert_storage_fault(&answer, "gold.fact_ed_visit", "storage");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "answered after {:?}",
        started.elapsed()
    );
    std::fs::rename(later.join("events-000002.ndjson"), &second).unwrap();
    let failed = ingest(&azurite);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("error:"), "{stderr}");
    assert!(own_panics(&stderr).is_empty(), "{stderr}");

    // Storage is back: the server answers without a restart, ingest lands the rest once.
    azurite.restart();
    let visits = wait_for(30, "the server to read storage again", || {
        let (status, body) = sql(
            &client,
            &server,
            "SELECT count(*) AS n FROM gold.fact_ed_visit",
        );
        (status == 200).then(|| body["rows"][0]["n"].as_i64().unwrap())
    });
    assert!(visits > 0);
    let resumed = ingest(&azurite);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let silver = count(&client, &server, "silver.patient_events");
    assert_eq!(Value::from(silver), ledger["silver_rows"]);
    let quarantine = count(&client, &server, "silver.quarantine");
    assert_eq!(Value::from(quarantine), ledger["quarantined"]);

    // Storage stops again with a query in flight: SIGTERM still ends the server in bounded
    // time.
    azurite.stop();
    let inflight_client = client.clone();
    let url = server.url("/api/v1/sql");
    std::thread::spawn(move || {
        let _ = post(
            &inflight_client,
            &url,
            &json!({"sql": "SELECT count(*) FROM gold.fact_stay_segment"}),
        );
    });
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    let status = server.terminate();
    assert!(
        stopped.elapsed() < Duration::from_secs(40),
        "shutdown took {:?}",
        stopped.elapsed()
    );
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(own_panics(&log).is_empty(), "{log}");
}
