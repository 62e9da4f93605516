//! `patientflow maintain`: compaction, checkpoints and VACUUM while the query service reads,
//! and independent readers (Python `deltalake`, DuckDB over its Arrow) afterwards.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use patientflow_e2e::{Server, ingest, parse_json, path, produce, run_ok, scalar};
use serde_json::Value;

use crate::python_reader::{TABLES, assert_independent_readers_agree};

/// Every table a pipeline run, a query and a maintenance run write.
fn tables() -> Vec<&'static str> {
    TABLES
        .into_iter()
        .chain(["ops/audit", "ops/maintenance"])
        .collect()
}

fn maintain(data: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["maintain", "--data", path(data), "--format", "json"];
    args.extend_from_slice(extra);
    parse_json(&run_ok(&args))
}

/// The rows of every table a pipeline run writes.
fn counts(data: &Path) -> Vec<i64> {
    TABLES
        .iter()
        .map(|t| scalar(data, t, "select count(*) from t"))
        .collect()
}

/// The operations of `kind` in a `maintain --format json` summary.
fn operations<'a>(summary: &'a Value, kind: &str) -> Vec<&'a Value> {
    summary["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["operation"] == kind)
        .collect()
}

/// The table's latest version: its newest JSON commit.
fn latest_version(table: &Path) -> u64 {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")?.parse().ok()
        })
        .max()
        .unwrap()
}

/// The version of the table's last checkpoint, if any.
fn checkpoint_version(table: &Path) -> Option<u64> {
    let hint = std::fs::read(table.join("_delta_log/_last_checkpoint")).ok()?;
    serde_json::from_slice::<Value>(&hint).unwrap()["version"].as_u64()
}

/// The table's `delta.checkpointInterval`, as its latest `metaData` action states it.
fn checkpoint_interval(table: &Path) -> Option<String> {
    (0..=latest_version(table)).rev().find_map(|v| {
        let commit = table.join(format!("_delta_log/{v:020}.json"));
        let text = std::fs::read_to_string(commit).ok()?;
        text.lines().find_map(|line| {
            let action: Value = serde_json::from_str(line).unwrap();
            let configuration = action.get("metaData")?.get("configuration")?;
            Some(
                configuration["delta.checkpointInterval"]
                    .as_str()?
                    .to_string(),
            )
        })
    })
}

/// Makes every `remove` action of `table` two hours old, as if its files had been replaced
/// two hours ago, so that a one-hour VACUUM may delete them.
fn age_removals(table: &Path) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let two_hours_ago = now.as_millis() as i64 - 2 * 3_600_000;
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let aged: Vec<String> = text
            .lines()
            .map(|line| {
                let mut action: Value = serde_json::from_str(line).unwrap();
                if let Some(remove) = action.get_mut("remove") {
                    remove["deletionTimestamp"] = two_hours_ago.into();
                }
                action.to_string()
            })
            .collect();
        std::fs::write(&file, aged.join("\n") + "\n").unwrap();
    }
}

#[test]
fn maintenance_compacts_checkpoints_and_vacuums_while_queries_run() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    produce(&landing, 6_000, &["--records-per-file", "1000"]);
    // Small batches: many commits and small files in bronze and silver.
    ingest(&landing, &data, &["--batch-records", "400"]);
    let silver = data.join("silver/patient_events");
    let parquet_files = |table: &Path| {
        std::fs::read_dir(table)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count()
    };
    assert!(parquet_files(&silver) >= 10, "one small file per batch");
    // Tables are created with a checkpoint every 10 commits, so the ingest wrote one at
    // version 9 (delta-rs alone would wait for 100).
    assert!(latest_version(&silver) >= 10);
    assert_eq!(checkpoint_version(&silver), Some(9));
    // Commits older than the log retention (30 days) before that checkpoint: the writers leave
    // them (delta-rs would list the whole log after every commit to find them), and the
    // maintenance below deletes them.
    let expired = |v: u64| silver.join(format!("_delta_log/{v:020}.json"));
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(31 * 86_400);
    for v in 0..9 {
        let file = std::fs::File::options()
            .append(true)
            .open(expired(v))
            .unwrap();
        file.set_modified(long_ago).unwrap();
    }
    let version = latest_version(&silver);
    let more = dir.path().join("more");
    produce(&more, 400, &["--seed", "2"]);
    ingest(&more, &data, &[]);
    assert!(
        latest_version(&silver) > version,
        "the second ingest committed"
    );
    assert!(
        (0..9).all(|v| expired(v).exists()),
        "a writer deletes no log file"
    );
    let before = counts(&data);

    // Queries run all the while, through the query service.
    let server = Server::start(&data, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (client, url, stop) = (server.client(), server.url("/api/v1/sql"), stop.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) || answers.len() < 5 {
                i += 1;
                // A different statement each time, so that no answer comes from the cache.
                let sql = format!(
                    "SELECT count(*) AS n FROM silver.patient_events WHERE hospital_id <> {}",
                    1_000 + i
                );
                let response = client
                    .post(&url)
                    .json(&serde_json::json!({ "sql": sql }))
                    .send()
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().unwrap_or(Value::Null);
                answers.push((status, body["rows"][0]["n"].as_i64()));
            }
            answers
        })
    };

    let dry = maintain(&data, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert!(
        operations(&dry, "compact").is_empty(),
        "a dry run changes nothing"
    );
    // Every 100 commits: each table's interval is set to 100, and no checkpoint is due, so
    // the removals aged below are read from the JSON commits.
    let first = maintain(
        &data,
        &["--retention-hours", "1", "--checkpoint-every", "100"],
    );
    let set: Vec<&str> = operations(&first, "checkpoint_interval")
        .iter()
        .map(|o| o["table"].as_str().unwrap())
        .collect();
    assert!(set.contains(&"silver/patient_events"), "{first}");
    let cleaned: Vec<&Value> = operations(&first, "log_cleanup")
        .into_iter()
        .filter(|o| o["table"] == "silver/patient_events")
        .collect();
    assert_eq!(cleaned.len(), 1, "{first}");
    assert_eq!(cleaned[0]["files_removed"], 9, "{first}");
    assert!((0..9).all(|v| !expired(v).exists()));
    assert!(expired(9).exists(), "the checkpoint's own commit is kept");
    assert_eq!(checkpoint_interval(&silver).as_deref(), Some("100"));
    let compacted: Vec<&str> = operations(&first, "compact")
        .iter()
        .map(|o| o["table"].as_str().unwrap())
        .collect();
    assert!(compacted.contains(&"bronze/patient_events"), "{first}");
    assert!(compacted.contains(&"silver/patient_events"), "{first}");
    assert!(operations(&first, "checkpoint").is_empty(), "{first}");
    // The compaction's files are referenced by versions younger than the retention: kept.
    let kept: u64 = operations(&first, "vacuum")
        .iter()
        .map(|o| o["files_removed"].as_u64().unwrap())
        .sum();
    assert_eq!(kept, 0, "{first}");

    // Two hours later (the removals aged), VACUUM deletes the replaced files; a dry run lists
    // them first and deletes nothing.
    let small_files = parquet_files(&silver);
    age_removals(&silver);
    let listed = maintain(&data, &["--retention-hours", "1", "--dry-run"]);
    let would: Vec<&Value> = operations(&listed, "vacuum")
        .into_iter()
        .filter(|o| o["table"] == "silver/patient_events")
        .collect();
    let would_delete = would[0]["deleted"].as_array().unwrap().len();
    assert!(would_delete >= 10, "{listed}");
    assert_eq!(
        parquet_files(&silver),
        small_files,
        "a dry run deletes nothing"
    );
    let second = maintain(&data, &["--retention-hours", "1"]);
    let deleted: u64 = operations(&second, "vacuum")
        .iter()
        .filter(|o| o["table"] == "silver/patient_events")
        .map(|o| o["files_removed"].as_u64().unwrap())
        .sum();
    assert_eq!(deleted as usize, would_delete);
    assert_eq!(parquet_files(&silver), small_files - would_delete);
    // Back to the default interval (10 commits): set again, and silver, more than 10 commits
    // past its checkpoint at version 9, gets a new one (maintain's own, or its writer's when
    // a commit of this run lands on a multiple of 10).
    assert_eq!(checkpoint_interval(&silver).as_deref(), Some("10"));
    assert!(checkpoint_version(&silver).unwrap() > 9, "{second}");
    assert!(latest_version(&silver) - checkpoint_version(&silver).unwrap() < 10);

    stop.store(true, Ordering::Relaxed);
    let answers = reader.join().unwrap();
    let silver_rows = before[1];
    assert!(
        answers
            .iter()
            .all(|(status, n)| *status == 200 && *n == Some(silver_rows)),
        "every query during maintenance answered with every row: {answers:?}"
    );
    drop(server);

    // The current versions read the same rows, and what was done is on record.
    assert_eq!(counts(&data), before);
    let recorded = scalar(
        &data,
        "ops/maintenance",
        "select count(*) from t where operation = 'vacuum' and files_removed > 0",
    );
    assert!(recorded >= 1);

    // Too short a retention is refused with what to do.
    let refused = patientflow_e2e::patientflow()
        .args([
            "maintain",
            "--data",
            path(&data),
            "--retention-hours",
            "0.5",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least 1 hour"));

    // Independent readers read every table, still Delta 1.0 (reader 1, writer 2, no features).
    assert_independent_readers_agree(&data, &tables());
}
