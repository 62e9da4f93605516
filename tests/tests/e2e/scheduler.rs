//! `patientflow run --serve`: runs started over REST (202, Location, polled to the end), the
//! file trigger, a run killed with SIGKILL resumed once under its idempotency key, and alerts
//! of a failed run received by a local webhook — once per failed run, resolved on success.

use std::path::Path;

use patientflow_e2e::{Receiver, Server, path, produce, rows, scalar, wait_for};
use serde_json::Value;

/// Starts a run of `job`: the 202's Location.
pub(crate) fn start(server: &Server, job: &str) -> String {
    let response = server
        .client()
        .post(server.url(&format!("/api/v1/pipelines/{job}/runs")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202, "{job}");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let run: Value = response.json().unwrap();
    assert_eq!(run["status"], "queued", "{run}");
    assert_eq!(
        location,
        format!("/api/v1/pipelines/runs/{}", run["run_id"].as_str().unwrap())
    );
    location
}

/// Follows a run's Location, as Data Factory does, until it has ended.
pub(crate) fn follow(server: &Server, location: &str) -> Value {
    wait_for(300, location, || {
        let run: Value = server
            .client()
            .get(server.url(location))
            .send()
            .unwrap()
            .json()
            .unwrap();
        matches!(run["status"].as_str(), Some("succeeded" | "failed")).then_some(run)
    })
}

pub(crate) fn config(dir: &Path, body: &str) -> std::path::PathBuf {
    let file = dir.join("patientflow.toml");
    std::fs::write(
        &file,
        format!("[run]\npoll_ms = 200\n{body}\n[alerts]\ncheck_seconds = 3600\n"),
    )
    .unwrap();
    file
}

pub(crate) fn job(name: &str, kind: &str, from: Option<&Path>, extra: &str) -> String {
    let from = from.map_or(String::new(), |p| format!("from = \"{}\"\n", path(p)));
    format!("[[jobs]]\nname = \"{name}\"\nkind = \"{kind}\"\n{from}{extra}\n")
}

#[test]
fn runs_started_over_rest_are_polled_to_their_end_recorded_and_alert_once_when_they_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data, later) = (
        dir.path().join("landing"),
        dir.path().join("data"),
        dir.path().join("later"),
    );
    let ledger = produce(&landing, 3_000, &["--seed", "5"]);
    let feed = dir.path().join("feed");
    std::fs::create_dir_all(&feed).unwrap();
    let config = config(
        dir.path(),
        &[
            job("adt-batch", "ingest", Some(&landing), "retries = 0"),
            // Its folder does not exist yet: it fails, is retried once, and alerts once.
            job(
                "late-batch",
                "ingest",
                Some(&later),
                "retries = 1\nretry_backoff_seconds = 1",
            ),
            job(
                "gold",
                "gold",
                None,
                "schedule = \"0 3 * * *\"\ncatchup = \"none\"",
            ),
        ]
        .concat(),
    );
    let hooks = Receiver::start();
    let (teams, webhook) = (
        format!("{}/teams", hooks.url),
        format!("{}/alertmanager", hooks.url),
    );
    let server = Server::start_run(
        &config,
        &data,
        &[
            ("PATIENTFLOW_TEAMS_WEBHOOK_URL", teams.as_str()),
            ("PATIENTFLOW_ALERT_WEBHOOK_URL", webhook.as_str()),
        ],
    );

    // Two runs of one job at once: the second waits for the first.
    let first = start(&server, "adt-batch");
    let second = start(&server, "adt-batch");
    let (a, b) = (follow(&server, &first), follow(&server, &second));
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(a["trigger"], "api");
    assert_eq!(a["counts"]["records_in"], ledger["records_in"], "{a}");
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(
        b["counts"]["records_in"], 0,
        "nothing new the second time: {b}"
    );
    assert!(
        b["started_at"].as_str() >= a["ended_at"].as_str(),
        "overlap: {a} {b}"
    );

    let failed = follow(&server, &start(&server, "late-batch"));
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["attempt"], 2,
        "the first attempt and one retry: {failed}"
    );
    assert!(
        failed["error"].as_str().unwrap().contains("later"),
        "{failed}"
    );

    // One alert for the failed run, not one per attempt, to each sink. (The simulated
    // network has full departments too: their bottleneck alerts are not looked at here.)
    let of_job = |sink: &str| -> Vec<Value> {
        hooks
            .at(sink)
            .into_iter()
            .filter(|m| {
                m["alerts"][0]["labels"]["alertname"] == "job_failed"
                    || m.to_string().contains("job_failed")
            })
            .collect()
    };
    let am = wait_for(30, "the Alertmanager notice", || {
        of_job("/alertmanager").first().cloned()
    });
    assert_eq!(am["version"], "4");
    assert_eq!(am["status"], "firing");
    let alert = &am["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "job_failed");
    assert_eq!(alert["labels"]["job"], "late-batch");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        alert["startsAt"].as_str().unwrap().starts_with("20"),
        "{am}"
    );
    assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 16);
    let card = wait_for(30, "the Teams notice", || of_job("/teams").first().cloned());
    assert_eq!(card["type"], "message");
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");
    assert!(
        card["attachments"][0]["content"]["body"][1]["text"]
            .as_str()
            .unwrap()
            .contains("late-batch"),
        "{card}"
    );
    let alerts: Value = server
        .client()
        .get(server.url("/api/v1/alerts"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "job_failed:late-batch" && a["severity"] == "critical"),
        "{alerts}"
    );

    // The folder arrives; the next run succeeds and the alert resolves.
    produce(&later, 200, &["--seed", "6"]);
    let ok = follow(&server, &start(&server, "late-batch"));
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let resolved = wait_for(30, "the resolved notice", || {
        of_job("/alertmanager")
            .into_iter()
            .find(|m| m["status"] == "resolved")
    });
    assert_eq!(resolved["alerts"][0]["labels"]["job"], "late-batch");
    assert!(
        resolved["alerts"][0]["endsAt"].as_str().unwrap() > "2000",
        "{resolved}"
    );
    assert_eq!(
        of_job("/alertmanager").len(),
        2,
        "fired once, resolved once"
    );

    // The jobs, the runs of one job, and the history table.
    let jobs: Value = server
        .client()
        .get(server.url("/api/v1/pipelines"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let gold = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "gold")
        .unwrap();
    assert_eq!(gold["schedule"], "0 3 * * *");
    assert!(
        gold["next_fire_time"]
            .as_str()
            .unwrap()
            .contains("T03:00:00"),
        "{gold}"
    );
    let listed: Value = server
        .client()
        .get(server.url("/api/v1/pipelines/runs?job=adt-batch&limit=1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1);
    assert_eq!(listed["runs"][0]["run_id"], b["run_id"], "newest first");
    let missing = server
        .client()
        .post(server.url("/api/v1/pipelines/nope/runs"))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Only the data-engineer role drives pipelines.
    let clinician = server.mint(&[
        "--role",
        "department_clinician",
        "--hospital",
        "1",
        "--department",
        "ICU",
    ]);
    let refused = server
        .client_with(&clinician)
        .post(server.url("/api/v1/pipelines/adt-batch/runs"))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = server
        .client_with(&clinician)
        .get(server.url(&first))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 403);
    drop(server);

    let runs = [("r", "ops/pipeline_runs")];
    let id = a["run_id"].as_str().unwrap();
    assert_eq!(
        rows(
            &data,
            &runs,
            &format!(
                "SELECT status, attempt, trigger, records_in FROM r WHERE run_id = '{id}' ORDER BY recorded_at"
            )
        ),
        [
            "queued|1|api|0",
            "running|1|api|0",
            &format!("succeeded|1|api|{}", ledger["records_in"]),
        ]
    );
}

#[test]
fn a_file_is_ingested_once_by_its_trigger_and_not_again_by_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (ehr, data) = (dir.path().join("ehr"), dir.path().join("data"));
    std::fs::create_dir_all(&ehr).unwrap();
    // Every minute: the test sees the next scheduled run within a minute of the file's.
    let config = config(
        dir.path(),
        &format!(
            "grace_seconds = 1\n{}",
            job(
                "ehr-daily",
                "ehr",
                Some(&ehr),
                "schedule = \"* * * * *\"\non_file = true\ncatchup = \"none\""
            )
        ),
    );
    let server = Server::start_run(&config, &data, &[]);
    let runs = |trigger: &str| -> Vec<Value> {
        let listed: Value = server
            .client()
            .get(server.url("/api/v1/pipelines/runs?job=ehr-daily&limit=100"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        listed["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["trigger"] == trigger && r["status"] == "succeeded")
            .cloned()
            .collect()
    };
    // Right after a scheduled run the next is a minute away: the file comes in between.
    wait_for(90, "a first scheduled run", || {
        runs("schedule").first().cloned()
    });
    std::fs::write(
        ehr.join("extract.csv"),
        "patient_id,gender,age,updated_at,insurance_type,language\n\
         P1,F,70,2026-03-01T10:00:00Z,Medicare,en\n\
         P2,M,30,2026-02-15T00:00:00Z,Private,\n",
    )
    .unwrap();
    let by_file = wait_for(30, "the file-triggered run", || {
        runs("file").first().cloned()
    });
    assert_eq!(by_file["counts"]["records_in"], 2, "{by_file}");
    assert_eq!(by_file["counts"]["files"], 1);
    let ended = by_file["ended_at"].as_str().unwrap().to_string();
    let scheduled = wait_for(90, "a scheduled run after it", || {
        runs("schedule")
            .into_iter()
            .find(|r| r["started_at"].as_str().unwrap() > ended.as_str())
    });
    assert_eq!(
        scheduled["counts"]["records_in"], 0,
        "ingested again: {scheduled}"
    );
    assert_eq!(runs("file").len(), 1, "one file, one run");
    drop(server);
    assert_eq!(
        scalar(&data, "silver/ehr_patients", "SELECT count(*) FROM t"),
        2
    );
}

#[test]
fn a_run_killed_mid_way_is_resumed_once_under_its_key_and_ingests_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    let ledger = produce(&landing, 40_000, &["--seed", "9", "--dirty-rate", "0.1"]);
    let config = config(
        dir.path(),
        &format!(
            "{}[ingest]\nbatch_records = 2500\n",
            job("adt-batch", "ingest", Some(&landing), "retries = 1")
        ),
    );
    let server = Server::start_run(&config, &data, &[]);
    let location = start(&server, "adt-batch");
    let bronze = data.join("bronze/patient_events/_delta_log");
    // Killed once bronze has commits but before the run ends.
    wait_for(120, "the first bronze commits", || {
        let commits = std::fs::read_dir(&bronze).map_or(0, |d| d.count());
        (commits >= 3).then_some(())
    });
    let before: Value = server
        .client()
        .get(server.url(&location))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(before["status"], "running", "killed too late: {before}");
    server.kill();

    let server = Server::start_run(&config, &data, &[]);
    let run = follow(&server, &location);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 2, "resumed as the second attempt: {run}");
    assert_eq!(run["run_id"], before["run_id"]);
    assert_eq!(run["idempotency_key"], before["idempotency_key"]);
    drop(server);

    let records = ledger["records_in"].as_i64().unwrap();
    assert_eq!(
        scalar(&data, "bronze/patient_events", "SELECT count(*) FROM t"),
        records,
        "bronze"
    );
    let silver = scalar(&data, "silver/patient_events", "SELECT count(*) FROM t");
    let quarantined = scalar(&data, "silver/quarantine", "SELECT count(*) FROM t");
    assert_eq!(silver, ledger["silver_rows"].as_i64().unwrap(), "silver");
    assert_eq!(
        quarantined,
        ledger["quarantined"].as_i64().unwrap(),
        "quarantine"
    );
    let id = run["run_id"].as_str().unwrap();
    let history = rows(
        &data,
        &[("r", "ops/pipeline_runs")],
        &format!("SELECT status, attempt FROM r WHERE run_id = '{id}' ORDER BY recorded_at"),
    );
    assert_eq!(
        history,
        [
            "queued|1",
            "running|1",
            "queued|2",
            "running|2",
            "succeeded|2"
        ]
    );
}
