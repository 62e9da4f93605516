//! Follow mode on a landing folder: whole files and lines appended (a line split across two
//! writes included) while `ingest --follow` runs, a SIGKILL and a restart, a SIGTERM that
//! commits the batch in hand: exact counts, every file's position at its end. Records reach a
//! REST query as they land: one appended admission, and a steady rate batch after batch.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use patientflow_e2e::{
    assert_report_matches_ledger, parse_json, path, patientflow, produce, quality_report, scalar,
};

fn follow(landing: &Path, data: &Path) -> Child {
    patientflow()
        .args([
            "ingest",
            "--follow",
            "--from",
            path(landing),
            "--data",
            path(data),
        ])
        .args(["--batch-interval-ms", "300", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ingest --follow")
}

/// Rows in bronze now (0 before the table exists).
fn bronze_rows(data: &Path) -> i64 {
    if !data.join("bronze/patient_events/_delta_log").exists() {
        return 0;
    }
    scalar(data, "bronze/patient_events", "SELECT count(*) FROM t")
}

fn wait_for_bronze(data: &Path, rows: i64, within: Duration) {
    let started = Instant::now();
    loop {
        let n = bronze_rows(data);
        if n >= rows {
            assert_eq!(n, rows, "bronze holds more rows than were written");
            return;
        }
        assert!(
            started.elapsed() < within,
            "bronze has {n} of {rows} rows after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM, then the JSON summary the follower prints as it stops.
fn terminate(child: Child) -> serde_json::Value {
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "follower exited with {}", out.status);
    parse_json(String::from_utf8_lossy(&out.stdout).trim())
}

/// A server on `data` once the follower has written gold (within 2 minutes).
fn serve_once_gold_exists(data: &Path) -> patientflow_e2e::Server {
    let started = Instant::now();
    while !data.join("gold/fact_admission/_delta_log").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no gold");
        std::thread::sleep(Duration::from_millis(100));
    }
    patientflow_e2e::Server::start(data, &[])
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn follow_mode_reads_files_and_appended_lines_exactly_once_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let landing = dir.path().join("landing");
    let data = dir.path().join("data");
    let ledger = produce(
        &staging,
        12_000,
        &["--dirty-rate", "0.1", "--records-per-file", "3000"],
    );
    let files: Vec<Vec<u8>> = (1..=4)
        .map(|i| std::fs::read(staging.join(format!("events-{i:06}.ndjson"))).unwrap())
        .collect();
    let lines = |f: &[u8]| f.iter().filter(|b| **b == b'\n').count() as i64;
    std::fs::create_dir_all(&landing).unwrap();

    let follower = follow(&landing, &data);
    // A whole file, then a file that grows line by line, one line split across two writes.
    std::fs::write(landing.join("a.ndjson"), &files[0]).unwrap();
    wait_for_bronze(&data, 3000, Duration::from_secs(120));
    let growing = landing.join("b.ndjson");
    let (head, tail) = files[1].split_at(files[1].len() / 2);
    let cut = head.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    append(&growing, &head[..cut]);
    let mid = head.len() - cut;
    append(&growing, &head[cut..]);
    std::thread::sleep(Duration::from_millis(800));
    // Only the complete lines are in: the half-written one waits for its end.
    wait_for_bronze(&data, 3000 + lines(&head[..cut]), Duration::from_secs(60));
    assert!(mid > 0);
    append(&growing, tail);
    wait_for_bronze(&data, 6000, Duration::from_secs(60));

    // SIGKILL while the third file is landing, then a restart.
    let mut follower = follower;
    std::fs::write(landing.join("c.ndjson"), &files[2]).unwrap();
    std::thread::sleep(Duration::from_millis(350));
    follower.kill().unwrap();
    follower.wait().unwrap();
    let follower = follow(&landing, &data);
    append(&landing.join("d.ndjson"), &files[3]);
    wait_for_bronze(&data, 12_000, Duration::from_secs(180));
    let summary = terminate(follower);
    assert!(summary["records_in"].as_i64().unwrap() > 0, "{summary}");

    assert_eq!(bronze_rows(&data), 12_000);
    let report = quality_report(&data);
    assert_report_matches_ledger(&report, &ledger, "follow mode");
    assert_eq!(
        scalar(&data, "silver/patient_events", "SELECT count(*) FROM t"),
        ledger["silver_rows"].as_i64().unwrap()
    );
    // Gold followed along.
    assert!(scalar(&data, "gold/fact_admission", "SELECT count(*) FROM t") > 0);

    // A follower started on a folder it has consumed adds nothing.
    let follower = follow(&landing, &data);
    std::thread::sleep(Duration::from_secs(3));
    let summary = terminate(follower);
    assert_eq!(summary["records_in"], 0, "{summary}");
    assert_eq!(bronze_rows(&data), 12_000);
}

#[test]
fn an_appended_admission_reaches_a_rest_query_through_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let data = dir.path().join("data");
    produce(&landing, 3000, &["--records-per-file", "3000"]);
    let follower = follow(&landing, &data);
    wait_for_bronze(&data, 3000, Duration::from_secs(120));
    let server = serve_once_gold_exists(&data);
    let client = server.client();

    // A new admission, written to a file the follower already watches.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let event = serde_json::json!({
        "age": 47, "bed_id": 101, "department": "ICU", "hospital_id": 1, "gender": "Female",
        "encounter_id": "e2e-fresh-encounter", "event_id": "e2e-fresh-event",
        "event_time": now, "event_type": "ADMIT", "patient_id": "e2e-fresh-patient",
    });
    append(
        &landing.join("events-000001.ndjson"),
        format!("{event}\n").as_bytes(),
    );
    let sql = serde_json::json!({
        "sql": "SELECT count(*) AS n FROM gold.fact_admission WHERE encounter_id = 'e2e-fresh-encounter' AND is_currently_admitted"
    });
    let started = Instant::now();
    loop {
        let body: serde_json::Value = client
            .post(server.url("/api/v1/sql"))
            .json(&sql)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if body["rows"][0]["n"] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the admission never reached gold: {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let fresh: serde_json::Value = client
        .get(server.url("/api/v1/freshness"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // Receipt and commit times come from Delta's log, which keeps milliseconds.
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap_or_else(|e| panic!("{t}: {e} ({fresh})"))
            .timestamp_millis()
    };
    let written_ms = ms(&now);
    let as_of = fresh["data_as_of"].as_str().expect("data_as_of");
    assert!(ms(as_of) >= written_ms, "{fresh} (event at {now})");
    assert!(fresh["seconds_behind"].as_f64().unwrap() >= 0.0, "{fresh}");
    // The admission is the newest event, and it is as new as the census time: not catching up.
    let events_as_of = fresh["events_as_of"].as_str().expect("events_as_of");
    assert_eq!(ms(events_as_of), written_ms, "{fresh}");
    assert!(
        fresh["events_behind_seconds"].as_f64().unwrap()
            < fresh["events_warn_after_seconds"].as_f64().unwrap(),
        "{fresh}"
    );
    // The gold commit that made the admission visible came after it was written.
    let refreshed = fresh["refreshed_at"].as_str().expect("refreshed_at");
    assert!(
        ms(refreshed) >= written_ms,
        "{fresh} (event written at {now})"
    );
    terminate(follower);
}

#[test]
fn a_paced_producer_writes_each_record_as_it_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let mut producer = patientflow()
        .args(["produce", "--out", path(&landing), "--events", "300"])
        .args(["--seed", "5", "--rate", "100"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start produce --rate");
    let file = landing.join("events-000001.ndjson");
    // Bytes, not text: the producer's defects include invalid UTF-8.
    let lines = || {
        std::fs::read(&file)
            .map(|b| b.iter().filter(|c| **c == b'\n').count())
            .unwrap_or(0)
    };
    // About a second in: some of the records, under the file's own name, whole lines only.
    std::thread::sleep(Duration::from_millis(1200));
    let early = lines();
    let bytes = std::fs::read(&file).unwrap_or_default();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "a half-written line"
    );
    let status = producer.wait().unwrap();
    assert!(status.success());
    let all = lines();
    assert!(
        early > 0 && early < all,
        "{early} of {all} records visible mid-run"
    );
    assert!(all >= 300, "{all} records");
}

/// Events at a steady rate (100 a second for 15 s) into a followed folder: the admissions a
/// REST query sees grow batch after batch while the producer runs, never backwards, and at the
/// end silver over REST holds exactly the rows the producer's ledger expects.
#[test]
fn at_a_steady_rate_each_batch_reaches_rest_while_the_producer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    std::fs::create_dir_all(&landing).unwrap();
    let follower = follow(&landing, &data);
    let mut producer = patientflow()
        .args(["produce", "--out", path(&landing), "--events", "1500"])
        .args(["--seed", "9", "--rate", "100"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start produce --rate");
    let server = serve_once_gold_exists(&data);
    let client = server.client();
    let count = |table: &str| {
        let sql = serde_json::json!({"sql": format!("SELECT count(*) AS n FROM {table}")});
        let (_, body) = crate::serve::post(&client, &server.url("/api/v1/sql"), &sql);
        body["rows"][0]["n"]
            .as_i64()
            .unwrap_or_else(|| panic!("{body}"))
    };
    let mut seen = vec![count("gold.fact_admission")];
    while producer.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(250));
        seen.push(count("gold.fact_admission"));
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "admissions went backwards: {seen:?}"
    );
    let mut steps = seen.clone();
    steps.dedup();
    assert!(
        steps.len() >= 10,
        "the admissions grew in {} steps while the producer ran: {steps:?}",
        steps.len()
    );

    let ledger = patientflow_e2e::read_json(&landing.join("_producer_ledger.json"));
    let expected = ledger["silver_rows"].as_i64().unwrap();
    let started = Instant::now();
    while count("silver.patient_events") != expected {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "silver over REST never reached the ledger's {expected} rows"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let summary = terminate(follower);
    assert_eq!(summary["records_in"], ledger["records_in"], "{summary}");
    assert_eq!(count("silver.patient_events"), expected);
}
