//! Behaviour under load over the real binary: admission control refuses only with 503 /
//! RESOURCE_EXHAUSTED and Retry-After, cached answers never queue, every refusal is logged (who,
//! which door, why, never the statement) and counted in `/metrics`; a schema change and a gold
//! refresh under 16 clients fail no query.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use patientflow_e2e::{Server, path, python_json, run_ok, wait_for};
use serde_json::json;

use crate::serve::{get, metrics, network, post};

/// A query that holds its slot until the time limit cancels it: an inequality join.
const SLOW: &str = "SELECT count(*) FROM gold.fact_admission a \
                    JOIN gold.fact_admission b ON a.stay_key < b.stay_key \
                    JOIN gold.fact_census_hourly c ON c.census + a.transfers > b.transfers";

/// One Flight SQL query through ADBC (argv: URI, token, SQL): its rows, or the error the
/// client is told.
pub(crate) const FLIGHT_QUERY: &str = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import adbc_driver_flightsql.dbapi as flight_sql
conn = flight_sql.connect(sys.argv[1], db_kwargs={"adbc.flight.sql.authorization_header": "Bearer " + sys.argv[2]})
cur = conn.cursor()
try:
    cur.execute(sys.argv[3])
    out = {"rows": cur.fetchall()}
except Exception as e:
    out = {"error": str(e)}
print(json.dumps(out))
"#;

#[test]
fn a_full_queue_answers_503_with_retry_after_and_cached_answers_never_queue() {
    let dir = tempfile::tempdir().unwrap();
    let data = network(dir.path(), "21");
    let log = dir.path().join("serve.log");
    let server = Server::start_logged(
        &data,
        &[
            "--max-executing-queries",
            "1",
            "--max-queued-queries",
            "0",
            "--query-timeout",
            "10",
        ],
        &log,
    );
    let client = server.client();
    let census = server.url("/api/v1/kpis/census");
    let (status, cached) = get(&client, &census);
    assert_eq!(status, 200, "{cached}");

    // The one slot is taken by a long query.
    let slow_client = client.clone();
    let sql_url = server.url("/api/v1/sql");
    let slow = std::thread::spawn(move || post(&slow_client, &sql_url, &json!({ "sql": SLOW })));
    wait_for(60, "the slow query to execute", || {
        metrics(&client, &server)
            .contains("patientflow_queries_executing 1")
            .then_some(())
    });

    // An uncached query is refused at once, with what to do.
    let response = client
        .post(server.url("/api/v1/sql"))
        .json(&json!({"sql": "SELECT count(*) FROM gold.dim_patient"}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["code"], "overloaded");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("the server is busy"), "{message}");
    assert!(message.contains("serve.max_queued_queries"), "{message}");

    // The dashboard's cached answer does not queue.
    let (status, again) = get(&client, &census);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["rows"], cached["rows"]);

    // Flight SQL: RESOURCE_EXHAUSTED with the same message.
    let flight = python_json(
        FLIGHT_QUERY,
        &[
            &format!("grpc://{}", server.flight),
            &server.token,
            "SELECT count(*) FROM gold.dim_patient WHERE gender = 'F'",
        ],
    );
    let error = flight["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("RESOURCE_EXHAUSTED") || error.contains("ResourceExhausted"),
        "{flight}"
    );
    assert!(error.contains("the server is busy"), "{flight}");

    // The slow query ends (cancelled by its time limit) and, once its task has stopped, the
    // slot is free again.
    let (status, body) = slow.join().unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("query_timeout"))
    );
    wait_for(120, "the cancelled query to give its slot back", || {
        metrics(&client, &server)
            .contains("patientflow_queries_executing 0")
            .then_some(())
    });
    let (status, body) = post(
        &client,
        &server.url("/api/v1/sql"),
        &json!({"sql": "SELECT count(*) AS n FROM gold.dim_patient"}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["rows"][0]["n"].as_i64().unwrap() > 0, "{body}");

    let metrics = metrics(&client, &server);
    for line in [
        "patientflow_queries_refused_total{reason=\"queue_full\"} 2",
        "patientflow_queries_refused_total{reason=\"queue_timeout\"} 0",
        "patientflow_query_timeouts_total 1",
        "patientflow_queries_executing 0",
        "patientflow_query_queue_depth 0",
        "patientflow_query_slots 1",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    drop(server);

    // Each refusal and the cancellation at warning level: principal, door, reason; the
    // statement's text never.
    let log = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("query refused or cancelled"))
        .collect();
    assert_eq!(warnings.len(), 3, "{log}");
    for door in ["door=\"rest\"", "door=\"flight\""] {
        assert!(
            warnings
                .iter()
                .any(|l| l.contains(door) && l.contains("reason=\"queue_full\"")),
            "{door}: {warnings:?}"
        );
    }
    assert!(
        warnings.iter().any(|l| l.contains("reason=\"timeout\"")),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|l| l.contains("principal=")));
    assert!(!log.contains("dim_patient WHERE gender"), "{log}");
}

/// Lands one event carrying an attribute sources never sent before, with a config that tracks
/// it in gold: silver and `dim_patient` each gain a column, and gold commits.
fn ingest_new_attribute(dir: &std::path::Path, data: &std::path::Path) {
    let config = dir.join("patientflow.toml");
    std::fs::write(
        &config,
        "[gold]\ntracked_attributes = [\"insurance_type\", \"preferred_language\"]\n",
    )
    .unwrap();
    let landing = dir.join("landing-new");
    std::fs::create_dir_all(&landing).unwrap();
    let record = json!({
        "event_id": "load-new-attribute-0001",
        "event_type": "ADMIT",
        "event_time": "2026-11-20T11:00:00Z",
        "patient_id": "load-new-attribute-patient",
        "encounter_id": "load-new-attribute-encounter",
        "hospital_id": 2,
        "department": "Cardiology",
        "bed_id": 3,
        "gender": "Female",
        "age": 61,
        "preferred_language": "Spanish",
    });
    std::fs::write(landing.join("events-1.ndjson"), format!("{record}\n")).unwrap();
    run_ok(&[
        "--config",
        path(&config),
        "ingest",
        "--from",
        path(&landing),
        "--data",
        path(data),
        "--as-of",
        "2026-11-20T12:00:00Z",
    ]);
}

#[test]
fn a_new_attribute_column_and_a_gold_refresh_under_16_clients_fail_no_query() {
    let dir = tempfile::tempdir().unwrap();
    let data = network(dir.path(), "23");
    let server = Server::start(&data, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (client, stop) = (server.client(), Arc::clone(&stop));
            let (answered, failures) = (Arc::clone(&answered), Arc::clone(&failures));
            let (sql_url, query_url, census_url) = (
                server.url("/api/v1/sql"),
                server.url("/api/v1/query"),
                server.url("/api/v1/kpis/census"),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // A different LIMIT each time: the result cache cannot answer.
                    let limit = 1 + (i * 1000 + n) % 997;
                    let (status, body) = match n % 4 {
                        0 => post(
                            &client,
                            &sql_url,
                            &json!({"sql": format!("SELECT * FROM silver.patient_events ORDER BY bronze_seq DESC LIMIT {limit}")}),
                        ),
                        1 => post(
                            &client,
                            &sql_url,
                            &json!({"sql": format!("SELECT * FROM gold.dim_patient WHERE is_current LIMIT {limit}")}),
                        ),
                        2 => post(
                            &client,
                            &query_url,
                            &json!({"metrics": ["admissions", "census"], "dimensions": ["hospital", "department"], "limit": limit}),
                        ),
                        _ => get(&client, &census_url),
                    };
                    if status == 200 {
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.lock().unwrap().push(format!("{status} {body}"));
                    }
                }
            })
        })
        .collect();
    let at_least = |n: usize| {
        wait_for(300, "queries to be answered", || {
            (answered.load(Ordering::Relaxed) >= n).then_some(())
        })
    };
    at_least(64);
    ingest_new_attribute(dir.path(), &data);
    let after_change = answered.load(Ordering::Relaxed);
    at_least(after_change + 64);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // The new columns are there for the next query.
    let client = server.client();
    for (table, column) in [
        ("silver.patient_events", "preferred_language"),
        ("gold.dim_patient", "preferred_language"),
    ] {
        let (status, body) = post(
            &client,
            &server.url("/api/v1/sql"),
            &json!({"sql": format!("SELECT {column} FROM {table} WHERE {column} = 'Spanish'")}),
        );
        assert_eq!(status, 200, "{table}: {body}");
        assert_eq!(body["row_count"], 1, "{table}: {body}");
    }
}
