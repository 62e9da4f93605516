//! Streaming from a real Kafka-protocol broker (nisshi on loopback): a 3-partition topic,
//! two consumers in one group, one SIGKILLed mid-stream and restarted; exact counts against
//! the producer's ledger, each partition's logged offset its high watermark − 1; a consumer
//! started after everything is consumed adds nothing. And a SCRAM-SHA-256 login.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use patientflow_e2e::{
    Broker, assert_report_matches_ledger, logged_txn, parse_json, path, patientflow,
    quality_report, read_json, run_ok, scalar,
};

fn consumer(url: &str, data: &Path, extra: &[&str]) -> Child {
    patientflow()
        .args([
            "ingest",
            "--follow",
            "--from",
            url,
            "--group",
            "patientflow-test",
        ])
        .args([
            "--data",
            path(data),
            "--no-gold",
            "--batch-interval-ms",
            "300",
        ])
        .args(["--format", "json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a consumer")
}

fn bronze_rows(data: &Path) -> i64 {
    if !data.join("bronze/patient_events/_delta_log").exists() {
        return 0;
    }
    scalar(data, "bronze/patient_events", "SELECT count(*) FROM t")
}

fn terminate(child: Child) -> serde_json::Value {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "consumer exited with {}", out.status);
    parse_json(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn two_consumers_one_killed_mid_stream_land_every_event_exactly_once() {
    let broker = Broker::start();
    broker.admin(&["topic", "create", "adt", "--partitions", "3"]);
    let url = format!("kafka://{}/adt", broker.addr);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ledger_path = dir.path().join("ledger.json");

    let a = consumer(&url, &data, &[]);
    let b = consumer(&url, &data, &[]);
    // 100k events with every defect kind, at a pace that keeps the stream going while one
    // consumer is killed.
    let producer = patientflow()
        .args([
            "produce",
            "--to",
            &url,
            "--events",
            "100000",
            "--dirty-rate",
            "0.1",
        ])
        .args(["--rate", "8000", "--ledger", path(&ledger_path)])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while bronze_rows(&data) < 20_000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "nothing consumed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut a = a;
    a.kill().unwrap();
    a.wait().unwrap();
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success());
    let a = consumer(&url, &data, &[]);

    let ledger = read_json(&ledger_path);
    let total = ledger["records_in"].as_i64().unwrap();
    assert_eq!(total, 100_000);
    let started = Instant::now();
    loop {
        let n = bronze_rows(&data);
        assert!(
            n <= total,
            "bronze holds {n} rows, more than the {total} produced"
        );
        if n == total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "bronze has {n} of {total} rows"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    terminate(a);
    terminate(b);

    let report = quality_report(&data);
    assert_report_matches_ledger(&report, &ledger, "kafka, two consumers, one killed");
    assert_eq!(
        scalar(&data, "silver/patient_events", "SELECT count(*) FROM t"),
        ledger["silver_rows"].as_i64().unwrap()
    );
    // Every message once: distinct (partition, offset) pairs are as many as the rows.
    assert_eq!(
        scalar(
            &data,
            "bronze/patient_events",
            "SELECT count(DISTINCT (source_partition, source_line)) FROM t"
        ),
        total
    );
    let bronze = data.join("bronze/patient_events");
    for (p, hw) in broker.high_watermarks("adt", 3).into_iter().enumerate() {
        assert!(hw > 0, "partition {p} is empty");
        assert_eq!(
            logged_txn(&bronze, &format!("kafka:adt:{p}")),
            Some(hw - 1),
            "partition {p}"
        );
    }

    // A consumer started after everything is consumed adds nothing.
    let late = consumer(&url, &data, &[]);
    std::thread::sleep(Duration::from_secs(8));
    let summary = terminate(late);
    assert_eq!(summary["records_in"], 0, "{summary}");
    assert_eq!(bronze_rows(&data), total);
}

#[test]
fn a_consumer_logs_in_with_scram_sha_256() {
    let broker = Broker::start_scram("clinic", "s3cret-pw", "adt");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("patientflow.toml");
    std::fs::write(
        &config,
        "[kafka]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\
         \"sasl.username\" = \"clinic\"\n\"sasl.password\" = \"s3cret-pw\"\n",
    )
    .unwrap();
    let url = format!("kafka://{}/adt", broker.addr);
    let data = dir.path().join("data");
    let conf = ["--config", path(&config)];
    let ledger = dir.path().join("ledger.json");
    let mut args = vec!["produce", "--to", &url, "--events", "2000"];
    args.extend(["--ledger", path(&ledger)]);
    args.extend(conf);
    run_ok(&args);
    let follower = patientflow()
        .args(conf)
        .args([
            "ingest",
            "--follow",
            "--from",
            &url,
            "--data",
            path(&data),
            "--no-gold",
        ])
        .args(["--batch-interval-ms", "300", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while bronze_rows(&data) < 2000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "nothing consumed over SCRAM"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let summary = terminate(follower);
    assert_eq!(summary["records_in"], 2000, "{summary}");

    // A wrong password is refused: nothing is produced.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("s3cret-pw", "wrong")
            + "\"message.timeout.ms\" = \"5000\"\n",
    )
    .unwrap();
    let out = patientflow()
        .args(["--config", path(&bad)])
        .args(["produce", "--to", &url, "--events", "10"])
        .args(["--ledger", path(&dir.path().join("bad-ledger.json"))])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong SCRAM password was accepted");
}
