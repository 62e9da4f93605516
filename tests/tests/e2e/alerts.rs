//! Bottleneck alerts of `patientflow run --serve`, received by a local webhook: a batch that
//! fills a department fires one (red over 0.92), the department's clinician sees it and
//! another department's does not, and it resolves when the department empties.

use patientflow_e2e::{Receiver, Server, ingest_departments, wait_for};
use serde_json::Value;

use super::scheduler::{config, follow, job, start};

#[test]
fn a_bottleneck_fires_when_a_batch_fills_a_department_and_resolves_when_it_empties() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    let departments = dir.path().join("departments.csv");
    std::fs::write(
        &departments,
        "hospital_id,hospital_name,department,bed_capacity,staff_count,effective_from,aliases\n\
         1,Test General,Surgery,4,8,2026-01-01,\n\
         1,Test General,ICU,10,12,2026-01-01,\n",
    )
    .unwrap();
    ingest_departments(&data, &departments);
    std::fs::create_dir_all(&landing).unwrap();
    let at = |hours: i64| {
        (chrono::Utc::now() - chrono::Duration::hours(hours))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let event = |id: &str, kind: &str, hours: i64, enc: &str| {
        format!(
            r#"{{"event_id":"{id}","event_type":"{kind}","event_time":"{}","encounter_id":"{enc}","patient_id":"P{enc}","hospital_id":1,"department":"Surgery","gender":"F","age":50}}"#,
            at(hours)
        )
    };
    // Four of Surgery's four beds taken five hours ago: 100 % is red.
    let admits: Vec<String> = (1..=4)
        .map(|i| event(&format!("a{i}"), "ADMIT", 5, &i.to_string()))
        .collect();
    std::fs::write(landing.join("a.ndjson"), admits.join("\n") + "\n").unwrap();
    let config = config(
        dir.path(),
        &job("adt-batch", "ingest", Some(&landing), "retries = 0"),
    );
    let hooks = Receiver::start();
    let webhook = format!("{}/am", hooks.url);
    let server = Server::start_run(
        &config,
        &data,
        &[("PATIENTFLOW_ALERT_WEBHOOK_URL", webhook.as_str())],
    );
    assert_eq!(
        follow(&server, &start(&server, "adt-batch"))["status"],
        "succeeded"
    );
    let fired = wait_for(60, "the bottleneck alert", || {
        hooks
            .at("/am")
            .into_iter()
            .find(|m| m["alerts"][0]["labels"]["alertname"] == "bottleneck")
    });
    let labels = &fired["alerts"][0]["labels"];
    assert_eq!(fired["status"], "firing");
    assert_eq!(
        (labels["hospital"].as_str(), labels["department"].as_str()),
        (Some("1"), Some("Surgery"))
    );
    assert_eq!(labels["severity"], "critical", "100 % is red: {fired}");
    assert_eq!(fired["alerts"][0]["annotations"]["value"], "1");
    // The clinician of Surgery sees it; the ICU's does not.
    let of = |department: &str| -> Value {
        let token = server.mint(&[
            "--role",
            "department_clinician",
            "--hospital",
            "1",
            "--department",
            department,
        ]);
        server
            .client_with(&token)
            .get(server.url("/api/v1/alerts"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let surgery = of("Surgery");
    assert_eq!(surgery["alerts"][0]["key"], "bottleneck:1:Surgery");
    // The list says whose it is and when the data was last looked at.
    assert_eq!(surgery["source"], "scheduler");
    let checked = chrono::DateTime::parse_from_rfc3339(surgery["checked_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(
        chrono::Utc::now() - checked < chrono::Duration::minutes(5),
        "{surgery}"
    );
    assert_eq!(of("ICU")["alerts"].as_array().unwrap().len(), 0);

    // Three go home two hours ago: 25 %, and the alert resolves.
    let discharges: Vec<String> = (1..=3)
        .map(|i| event(&format!("d{i}"), "DISCHARGE", 2, &i.to_string()))
        .collect();
    std::fs::write(landing.join("b.ndjson"), discharges.join("\n") + "\n").unwrap();
    assert_eq!(
        follow(&server, &start(&server, "adt-batch"))["status"],
        "succeeded"
    );
    let resolved = wait_for(60, "the resolved notice", || {
        hooks
            .at("/am")
            .into_iter()
            .find(|m| m["status"] == "resolved")
    });
    assert_eq!(resolved["alerts"][0]["labels"]["department"], "Surgery");
    assert_eq!(hooks.at("/am").len(), 2, "fired once, resolved once");
}
