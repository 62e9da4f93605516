//! A table root on Azure Blob / ADLS Gen2 — Azurite, started by the test with its
//! development account: ingest, a batch, gold, maintain, serve and one scheduled run of
//! `patientflow run`, all on `az://` and `abfss://` URLs; the independent Python reader agrees
//! from the same Azurite URL; two writers at once land nothing twice; wrong credentials say
//! what to check and never show the key.

use patientflow_e2e::{Azurite, Server, parse_json, patientflow, produce, python_json, wait_for};
use serde_json::Value;

fn run_json(azurite: &Azurite, args: &[&str]) -> Value {
    let out = azurite.run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_json(&String::from_utf8_lossy(&out.stdout))
}

const READ: &str = r#"
import json, os, sys
from deltalake import DeltaTable
root, endpoint, account, key = sys.argv[1:5]
# The emulator's endpoint is read from the environment only.
os.environ["AZURITE_BLOB_STORAGE_URL"] = endpoint
options = {"account_name": account, "account_key": key, "use_emulator": "true"}
out = {}
for name in sys.argv[5:]:
    out[name] = DeltaTable(f"{root}/{name}", storage_options=options).to_pyarrow_table().num_rows
print(json.dumps(out))
"#;

/// Rows of each table under `root`, read by delta-rs's Python binding from Azurite.
fn read(azurite: &Azurite, root: &str, tables: &[&str]) -> Value {
    let mut args = vec![
        root,
        azurite.endpoint.as_str(),
        Azurite::ACCOUNT,
        Azurite::KEY,
    ];
    args.extend_from_slice(tables);
    python_json(READ, &args)
}

#[test]
fn the_pipeline_runs_on_an_azure_root_and_an_independent_reader_agrees() {
    let azurite = Azurite::start("lake");
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let ledger = produce(&landing, 3_000, &["--seed", "21"]);
    let root = "az://lake/patientflow";
    let abfss = format!(
        "abfss://lake@{}.dfs.core.windows.net/patientflow",
        Azurite::ACCOUNT
    );

    let ingested = run_json(
        &azurite,
        &[
            "ingest",
            "--from",
            landing.to_str().unwrap(),
            "--data",
            root,
            "--format",
            "json",
        ],
    );
    assert_eq!(ingested["records_in"], ledger["records_in"], "{ingested}");
    assert_eq!(ingested["silver_rows"], ledger["silver_rows"]);
    let ehr = dir.path().join("ehr.csv");
    std::fs::write(
        &ehr,
        "patient_id,gender,age,updated_at,insurance_type,language\nP1,F,70,2026-03-01T10:00:00Z,Medicare,en\n",
    )
    .unwrap();
    let batch = run_json(
        &azurite,
        &[
            "ingest",
            "batch",
            "--data",
            &abfss,
            "--ehr",
            ehr.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(
        batch["datasets"]["ehr_patients"]["silver_rows"], 1,
        "{batch}"
    );
    let gold = azurite.run(&["gold", "refresh", "--data", &abfss]);
    assert!(
        gold.status.success(),
        "{}",
        String::from_utf8_lossy(&gold.stderr)
    );
    let maintained = run_json(&azurite, &["maintain", "--data", root, "--format", "json"]);
    assert!(
        maintained["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["operation"] == "vacuum")
    );

    let counts = read(
        &azurite,
        root,
        &[
            "bronze/patient_events",
            "silver/patient_events",
            "silver/quarantine",
            "silver/ehr_patients",
            "gold/fact_admission",
        ],
    );
    assert_eq!(
        counts["bronze/patient_events"], ledger["records_in"],
        "{counts}"
    );
    assert_eq!(counts["silver/patient_events"], ledger["silver_rows"]);
    assert_eq!(counts["silver/quarantine"], ledger["quarantined"]);
    assert_eq!(counts["silver/ehr_patients"], 1);
    assert!(counts["gold/fact_admission"].as_u64().unwrap() > 0);

    // Served from the same root: SQL agrees with the independent reader.
    let server = Server::start_with(&["serve", "--data", root], dir.path(), &azurite.env());
    let answer: Value = server
        .client()
        .post(server.url("/api/v1/sql"))
        .json(&serde_json::json!({"sql": "SELECT count(*) AS n FROM silver.patient_events"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["rows"][0]["n"], ledger["silver_rows"], "{answer}");
    drop(server);

    // One scheduled run of `patientflow run` on the remote root (every minute).
    let config = dir.path().join("patientflow.toml");
    std::fs::write(
        &config,
        "[run]\ngrace_seconds = 1\n[[jobs]]\nname = \"gold\"\nkind = \"gold\"\nschedule = \"* * * * *\"\ncatchup = \"none\"\n",
    )
    .unwrap();
    let server = Server::start_with(
        &[
            "run",
            "--serve",
            "--config",
            config.to_str().unwrap(),
            "--data",
            root,
        ],
        dir.path(),
        &azurite.env(),
    );
    let tick = wait_for(90, "a scheduled gold run", || {
        let runs: Value = server
            .client()
            .get(server.url("/api/v1/pipelines/runs?job=gold"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "succeeded")
            .cloned()
    });
    assert_eq!(tick["trigger"], "schedule", "{tick}");
    drop(server);
    let history = read(&azurite, root, &["ops/pipeline_runs"]);
    assert!(
        history["ops/pipeline_runs"].as_u64().unwrap() >= 3,
        "queued, running, succeeded: {history}"
    );
}

#[test]
fn two_writers_at_once_land_nothing_twice_and_bad_credentials_say_what_to_check() {
    let azurite = Azurite::start("lake");
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let ledger = produce(
        &landing,
        12_000,
        &["--seed", "22", "--records-per-file", "2000"],
    );
    let root = "az://lake/two";
    let ingest = || {
        patientflow()
            .args([
                "ingest",
                "--from",
                landing.to_str().unwrap(),
                "--data",
                root,
                "--no-gold",
            ])
            .args(["--batch-records", "1000"])
            .envs(azurite.env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (ingest(), ingest());
    let outcomes: Vec<(bool, String)> = [a, b]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        })
        .collect();
    for (ok, stderr) in &outcomes {
        assert!(
            *ok || stderr.contains("another writer committed to it at the same time"),
            "{stderr}"
        );
    }
    // The refused one's records come with the next run; nothing lands twice.
    let again = run_json(
        &azurite,
        &[
            "ingest",
            "--from",
            landing.to_str().unwrap(),
            "--data",
            root,
            "--no-gold",
            "--format",
            "json",
        ],
    );
    assert!(again["records_in"].as_u64().is_some(), "{again}");
    let counts = read(
        &azurite,
        root,
        &[
            "bronze/patient_events",
            "silver/patient_events",
            "silver/quarantine",
        ],
    );
    assert_eq!(
        counts["bronze/patient_events"], ledger["records_in"],
        "{counts} {outcomes:?}"
    );
    assert_eq!(counts["silver/patient_events"], ledger["silver_rows"]);
    assert_eq!(counts["silver/quarantine"], ledger["quarantined"]);

    // A wrong key: refused, with what to check, and the key never printed.
    let wrong = "AAAA".to_string() + &Azurite::KEY[4..];
    let out = patientflow()
        .args([
            "ingest",
            "--from",
            landing.to_str().unwrap(),
            "--data",
            "az://lake/other",
        ])
        .envs(azurite.env())
        .env("AZURE_STORAGE_ACCOUNT_KEY", &wrong)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the storage account refused the credentials"),
        "{stderr}"
    );
    assert!(stderr.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{stderr}");
    assert!(
        !stderr.contains(&wrong) && !stderr.contains(Azurite::KEY),
        "{stderr}"
    );
}
