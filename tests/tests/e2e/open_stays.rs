//! Contract §5.1 on hand-computed data: stale and long-open stays, a late discharge that
//! revives a stale stay, a limit set in the reference file, emergency-department flow, and the
//! site's department file replacing the shipped one.

use std::path::{Path, PathBuf};

use patientflow_e2e::{Server, ingest, path, quality_report, rows, run_ok};
use serde_json::{Value, json};

/// Surgery's limits come from the reference file: long-open after 10 h, stale after 20 h.
const DEPARTMENTS: &str = "hospital_id,hospital_name,department,bed_capacity,staff_count,effective_from,aliases,warn_after_hours,stale_after_hours\n\
    1,Test General,Emergency,4,10,2025-01-01,ER;ED,,\n\
    1,Test General,Surgery,2,8,2025-01-01,,10,20\n\
    1,Test General,ICU,4,12,2025-01-01,,,\n";

fn adt(kind: &str, time: &str, enc: &str, dept: &str) -> String {
    format!(
        r#"{{"event_id":"{enc}-{kind}","event_type":"{kind}","event_time":"{time}","encounter_id":"{enc}","patient_id":"P-{enc}","hospital_id":1,"department":"{dept}","gender":"Female","age":40}}"#
    )
}

fn write(path: &Path, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Landing folder and table root with the site's department file ingested.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let (landing, data) = (dir.join("landing"), dir.join("data"));
    department_batch(&dir.join("departments.csv"), DEPARTMENTS, &data);
    (landing, data)
}

/// Writes `csv` to `file` and ingests it as a department batch into `data`.
fn department_batch(file: &Path, csv: &str, data: &Path) {
    std::fs::write(file, csv).unwrap();
    run_ok(&[
        "ingest",
        "batch",
        "--data",
        path(data),
        "--departments",
        path(file),
        "--no-gold",
    ]);
}

fn refresh(data: &Path, as_of: &str) -> Value {
    serde_json::from_str(&run_ok(&[
        "gold",
        "refresh",
        "--data",
        path(data),
        "--as-of",
        as_of,
        "--format",
        "json",
    ]))
    .unwrap()
}

fn stay(data: &Path, enc: &str) -> String {
    rows(
        data,
        &[("f", "gold/fact_admission")],
        &format!(
            "select cast(last_event_time as varchar), cast(stale_since as varchar), \
             cast(discharge_time as varchar), is_currently_admitted from f where stay_key = '{enc}'"
        ),
    )
    .join(";")
}

fn census(data: &Path, hour: &str, dept: &str) -> String {
    rows(
        data,
        &[("c", "gold/fact_census_hourly")],
        &format!(
            "select census, occupied_bed_hours from c \
             where hour_start = timestamp '{hour}' and department = '{dept}'"
        ),
    )
    .join(";")
}

/// Occupied bed-hours of a department on a day (the numerator of period occupancy).
fn bed_hours(data: &Path, day: i32, dept: &str) -> String {
    rows(
        data,
        &[("c", "gold/fact_census_hourly")],
        &format!(
            "select sum(occupied_bed_hours) from c where date_key = {day} and department = '{dept}'"
        ),
    )
    .join(";")
}

fn open_stays(report: &Value) -> Vec<(String, u64, u64, u64, String)> {
    report["open_stays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["department"].as_str().unwrap().to_string(),
                o["open"].as_u64().unwrap(),
                o["long_open"].as_u64().unwrap(),
                o["stale"].as_u64().unwrap(),
                o["oldest_last_event"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The answer to a semantic query through REST (status 200 asserted).
fn answer(server: &Server, body: Value) -> Value {
    let response = server
        .client()
        .post(server.url("/api/v1/query"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().unwrap()
}

/// `(hospital, department, long_open, stale)` of a list of open-stay counts with any.
fn long_open_and_stale(list: &Value) -> Vec<(i64, String, u64, u64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["hospital_id"].as_i64().unwrap(),
                o["department"].as_str().unwrap().to_string(),
                o["long_open"].as_u64().unwrap(),
                o["stale"].as_u64().unwrap(),
            )
        })
        .filter(|o| o.2 + o.3 > 0)
        .collect()
}

#[test]
fn a_stay_whose_discharge_is_lost_leaves_the_census_when_stale_and_a_late_discharge_revives_it() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = setup(dir.path());
    write(
        &landing.join("a.ndjson"),
        &[
            // Emergency: admitted 1 March 00:00, the discharge is lost (stale after 72 h).
            adt("ADMIT", "2026-03-01T00:00:00Z", "ED1", "Emergency"),
            // ICU: admitted 1 February, no event for 30 days (long-open after 14 d, stale 60 d).
            adt("ADMIT", "2026-02-01T00:00:00Z", "ICU1", "ICU"),
            // Surgery: the reference file makes it stale after 20 h.
            adt("ADMIT", "2026-03-01T06:00:00Z", "S1", "Surgery"),
        ],
    );
    let first = ingest(&landing, &data, &["--as-of", "2026-03-03T12:00:00Z"]);
    assert_eq!(first["gold"]["stale_stays"], 1, "{first}");
    assert_eq!(
        stay(&data, "ED1"),
        "2026-03-01T00:00:00Z|NULL|NULL|true",
        "not stale yet at 3 March 12:00"
    );
    assert_eq!(
        stay(&data, "S1"),
        "2026-03-01T06:00:00Z|2026-03-02T02:00:00Z|NULL|false"
    );
    assert_eq!(census(&data, "2026-03-02T01:00:00Z", "Surgery"), "1|1.0");
    assert_eq!(census(&data, "2026-03-02T02:00:00Z", "Surgery"), "0|0.0");

    // Time passes with nothing new. Before 4 March 00:00, the earliest time the last refresh
    // recorded an open stay goes stale, the refresh does not search; after it, it searches and
    // finds the emergency stay, stale from then.
    let before = refresh(&data, "2026-03-03T20:00:00Z");
    assert_eq!(
        (
            &before["full"],
            &before["patients"],
            &before["stale_search"]
        ),
        (&false.into(), &0.into(), &false.into()),
        "{before}"
    );
    assert_eq!(stay(&data, "ED1"), "2026-03-01T00:00:00Z|NULL|NULL|true");
    let later = refresh(&data, "2026-03-05T00:00:00Z");
    assert_eq!(
        (&later["stale_search"], &later["patients"]),
        (&true.into(), &1.into()),
        "{later}"
    );
    assert_eq!(later["full"], false, "{later}");
    assert_eq!(
        stay(&data, "ED1"),
        "2026-03-01T00:00:00Z|2026-03-04T00:00:00Z|NULL|false"
    );
    assert_eq!(census(&data, "2026-03-03T23:00:00Z", "Emergency"), "1|1.0");
    assert_eq!(census(&data, "2026-03-04T00:00:00Z", "Emergency"), "0|0.0");
    assert_eq!(census(&data, "2026-03-04T12:00:00Z", "Emergency"), "0|0.0");
    // Midnight census and period occupancy follow the same rule.
    assert_eq!(bed_hours(&data, 20260303, "Emergency"), "24.0");
    assert_eq!(bed_hours(&data, 20260304, "Emergency"), "0.0");
    // The ICU stay, 30 days quiet, still counts: long-open, not stale.
    assert_eq!(stay(&data, "ICU1"), "2026-02-01T00:00:00Z|NULL|NULL|true");
    assert_eq!(census(&data, "2026-03-04T12:00:00Z", "ICU"), "1|1.0");
    let report = quality_report(&data);
    assert_eq!(report["gold_as_of"], "2026-03-05T00:00:00+00:00");
    assert_eq!(
        open_stays(&report),
        vec![
            (
                "Emergency".into(),
                1,
                0,
                1,
                "2026-03-01T00:00:00+00:00".into()
            ),
            ("ICU".into(), 1, 1, 0, "2026-02-01T00:00:00+00:00".into()),
            (
                "Surgery".into(),
                1,
                0,
                1,
                "2026-03-01T06:00:00+00:00".into()
            ),
        ]
    );
    assert_eq!(report["records_in"], 3);
    assert_eq!(report["silver_rows"], 3);

    // The lost discharge arrives late: the stay closes at its own time, and every hour since
    // is recomputed as if it had arrived on time.
    write(
        &landing.join("b.ndjson"),
        &[adt("DISCHARGE", "2026-03-02T12:00:00Z", "ED1", "Emergency")],
    );
    let late = ingest(&landing, &data, &["--as-of", "2026-03-05T00:00:00Z"]);
    assert_eq!(late["gold"]["full"], false, "{late}");
    assert_eq!(
        stay(&data, "ED1"),
        "2026-03-02T12:00:00Z|NULL|2026-03-02T12:00:00Z|false"
    );
    assert_eq!(census(&data, "2026-03-02T11:00:00Z", "Emergency"), "1|1.0");
    assert_eq!(census(&data, "2026-03-02T12:00:00Z", "Emergency"), "0|0.0");
    assert_eq!(census(&data, "2026-03-03T12:00:00Z", "Emergency"), "0|0.0");
    assert_eq!(bed_hours(&data, 20260302, "Emergency"), "12.0");
    assert_eq!(bed_hours(&data, 20260303, "Emergency"), "0.0");
    assert_eq!(
        rows(
            &data,
            &[("c", "gold/fact_census_hourly")],
            "select sum(discharges) from c where department = 'Emergency'"
        ),
        vec!["1"]
    );
    assert_eq!(
        open_stays(&quality_report(&data)),
        vec![
            ("ICU".into(), 1, 1, 0, "2026-02-01T00:00:00+00:00".into()),
            (
                "Surgery".into(),
                1,
                0,
                1,
                "2026-03-01T06:00:00+00:00".into()
            ),
        ]
    );

    // Semantic KPIs read the same: midnight census of 3 March (census at 4 March 00:00) has
    // the ICU stay only; the bottleneck view sees no stale stay.
    let server = Server::start(&data, &[]);
    let midnight = answer(
        &server,
        json!({
        "metrics": ["midnight_census"], "dimensions": ["department"], "grain": "day",
        "time_range": {"from": "2026-03-03", "to": "2026-03-04"}}),
    );
    let by_department: Vec<(String, i64)> = midnight["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["department"].as_str().unwrap().to_string(),
                r["midnight_census"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_department,
        vec![
            ("Emergency".to_string(), 0),
            ("ICU".to_string(), 1),
            ("Surgery".to_string(), 0)
        ]
    );
}

#[test]
fn emergency_flow_counts_waiting_longest_wait_and_left_without_admission() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = setup(dir.path());
    write(
        &landing.join("ed.ndjson"),
        &[
            // Admitted after 90 minutes.
            adt("ARRIVAL", "2026-03-04T20:00:00Z", "A1", "ER"),
            adt("ADMIT", "2026-03-04T21:30:00Z", "A1", "Surgery"),
            // Still waiting at the as-of time: 120 and 30 minutes.
            adt("ARRIVAL", "2026-03-04T22:00:00Z", "A2", "ER"),
            adt("ARRIVAL", "2026-03-04T23:30:00Z", "A3", "ER"),
            // Arrived 38 h before the as-of time, never admitted.
            adt("ARRIVAL", "2026-03-03T10:00:00Z", "A4", "ER"),
            // Discharged from the emergency department without an admission.
            adt("ARRIVAL", "2026-03-04T08:00:00Z", "A5", "ER"),
            adt("DISCHARGE", "2026-03-04T10:00:00Z", "A5", "Emergency"),
        ],
    );
    ingest(&landing, &data, &["--as-of", "2026-03-05T00:00:00Z"]);
    assert_eq!(
        rows(
            &data,
            &[("v", "gold/fact_ed_visit")],
            "select encounter_id, department, cast(arrival_time as varchar), \
             cast(admission_time as varchar), cast(discharge_time as varchar), wait_minutes, outcome \
             from v order by encounter_id"
        ),
        vec![
            "A1|Emergency|2026-03-04T20:00:00Z|2026-03-04T21:30:00Z|NULL|90.0|admitted",
            "A2|Emergency|2026-03-04T22:00:00Z|NULL|NULL|120.0|waiting",
            "A3|Emergency|2026-03-04T23:30:00Z|NULL|NULL|30.0|waiting",
            "A4|Emergency|2026-03-03T10:00:00Z|NULL|NULL|NULL|left_without_admission",
            "A5|Emergency|2026-03-04T08:00:00Z|NULL|2026-03-04T10:00:00Z|120.0|left_without_admission",
        ]
    );
    // An arrival-only encounter is in no census: only A1's Surgery stay is.
    assert_eq!(
        rows(
            &data,
            &[("c", "gold/fact_census_hourly")],
            "select department, census from c where hour_start = timestamp '2026-03-05T00:00:00Z' \
             and census > 0"
        ),
        vec!["Surgery|1"]
    );

    let server = Server::start(&data, &[]);
    let client = server.client();
    let answer =
        |body: Value| -> Vec<Value> { answer(&server, body)["rows"].as_array().unwrap().clone() };
    // At the as-of time of the refresh, and at the end of a time range.
    let now = answer(
        json!({"metrics": ["ed_waiting", "ed_longest_wait_minutes"], "dimensions": ["hospital"]}),
    );
    assert_eq!(
        now,
        vec![json!({"hospital": 1, "ed_waiting": 2, "ed_longest_wait_minutes": 120.0})]
    );
    let earlier = answer(json!({"metrics": ["ed_waiting", "ed_longest_wait_minutes"],
        "time_range": {"from": "2026-03-04T00:00:00Z", "to": "2026-03-04T21:00:00Z"}}));
    // At 21:00: A1 (60 min) and A5 is gone; A4 arrived 35 h before.
    assert_eq!(
        earlier,
        vec![json!({"ed_waiting": 1, "ed_longest_wait_minutes": 60.0})]
    );
    let left = answer(json!({"metrics": ["ed_left_without_admission"], "grain": "day"}));
    let left: Vec<(String, i64)> = left
        .iter()
        .map(|r| {
            (
                r["period"].as_str().unwrap()[..10].to_string(),
                r["ed_left_without_admission"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        left,
        vec![("2026-03-03".to_string(), 1), ("2026-03-04".to_string(), 1)]
    );
    // The published view.
    let view = client
        .post(server.url("/api/v1/sql"))
        .json(
            &json!({"sql": "SELECT hospital, ed_waiting, ed_longest_wait_minutes FROM kpi.ed_now"}),
        )
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(
        view["rows"],
        json!([{"hospital": 1, "ed_waiting": 2, "ed_longest_wait_minutes": 120.0}])
    );
}

#[test]
fn a_site_department_file_replaces_the_shipped_one() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = setup(dir.path());
    // A capacity change for Surgery from 1 June.
    department_batch(
        &dir.path().join("change.csv"),
        "hospital_id,hospital_name,department,bed_capacity,staff_count,effective_from\n\
         1,Test General,Surgery,3,9,2026-06-01\n",
        &data,
    );
    write(
        &landing.join("a.ndjson"),
        &[adt("ADMIT", "2026-03-01T00:00:00Z", "S1", "Surgery")],
    );
    ingest(&landing, &data, &["--as-of", "2026-07-01T00:00:00Z"]);
    assert_eq!(
        rows(
            &data,
            &[("d", "gold/dim_department")],
            "select hospital_id, hospital_name, department, bed_capacity, cast(valid_from as varchar) as from_, \
             cast(valid_to as varchar) as to_, warn_after_hours, stale_after_hours from d \
             order by department, valid_from"
        ),
        vec![
            "1|Test General|Emergency|4|2025-01-01T00:00:00Z|NULL|24.0|72.0",
            "1|Test General|ICU|4|2025-01-01T00:00:00Z|NULL|336.0|1440.0",
            "1|Test General|Surgery|2|2025-01-01T00:00:00Z|2026-06-01T00:00:00Z|10.0|20.0",
            "1|Test General|Surgery|3|2026-06-01T00:00:00Z|NULL|10.0|20.0",
        ]
    );
    // Events of a hospital only the shipped file knows are quarantined now.
    write(
        &landing.join("b.ndjson"),
        &[r#"{"event_id":"x","event_type":"ADMIT","event_time":"2026-03-01T00:00:00Z","encounter_id":"X","patient_id":"PX","hospital_id":5,"department":"ICU"}"#.to_string()],
    );
    let out = ingest(&landing, &data, &["--as-of", "2026-07-01T00:00:00Z"]);
    assert_eq!(out["quarantined"], 1, "{out}");
    assert_eq!(out["rules"]["unknown_hospital"], 1, "{out}");
}

/// The demo's data (the producer's default settings, 200k events): occupancy a bed manager can
/// believe, a history that reaches the as-of time, and open stays as the producer's ledger
/// expects them.
#[test]
fn the_demo_data_has_believable_occupancy_and_the_ledger_s_open_stays() {
    const UNTIL: &str = "2026-12-02T06:00:00Z";
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    let ledger = patientflow_e2e::produce(&landing, 200_000, &["--until", UNTIL]);
    ingest(&landing, &data, &["--as-of", UNTIL]);
    let occupancy = rows(
        &data,
        &[("c", "gold/fact_census_hourly")],
        "select hospital_id, department, census, bed_capacity from c \
         where hour_start = (select max(hour_start) from c) order by hospital_id, department",
    );
    assert_eq!(occupancy.len(), 49);
    let (mut census, mut beds) = (0, 0);
    for row in &occupancy {
        let f: Vec<&str> = row.split('|').collect();
        let (n, cap): (i64, i64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        assert!(n * 100 <= cap * 110, "over 110 % of beds: {row}");
        census += n;
        beds += cap;
    }
    let network = census as f64 / beds as f64;
    assert!(
        (0.6..=0.95).contains(&network),
        "network occupancy {network}"
    );
    // Emergency waits of the admitted, per hospital: a full ward diverts its next patients
    // rather than let them wait for days (a median under 4 h, nine in ten within 8 h, none
    // past a day).
    let waits = rows(
        &data,
        &[("f", "gold/fact_admission")],
        "select hospital_id, median(ed_wait_minutes), approx_percentile_cont(ed_wait_minutes, 0.9), \
         max(ed_wait_minutes) from f where ed_wait_minutes is not null group by hospital_id",
    );
    assert_eq!(waits.len(), 7);
    for row in &waits {
        let f: Vec<f64> = row.split('|').skip(1).map(|v| v.parse().unwrap()).collect();
        assert!(
            f[0] < 240.0 && f[1] < 480.0 && f[2] < 1440.0,
            "hospital|median|p90|max minutes: {row}"
        );
    }
    // Admissions in the 24 hours before the as-of time, and events in its last hour.
    let recent = rows(
        &data,
        &[("f", "gold/fact_admission")],
        &format!(
            "select count(*) from f where admission_time >= timestamp '{UNTIL}' - interval '24 hours'"
        ),
    );
    assert!(recent[0].parse::<i64>().unwrap() > 500, "{recent:?}");
    let last = ledger["last_event"].as_str().unwrap();
    assert!(last.starts_with("2026-12-02T05:"), "{last}");
    // The quality report's long-open and stale stays are exactly the ledger's.
    let report = quality_report(&data);
    let expected = long_open_and_stale(&ledger["open_stays"]);
    assert_eq!(long_open_and_stale(&report["open_stays"]), expected);
    let stale: u64 = expected.iter().map(|e| e.3).sum();
    assert!(stale > 20, "the lost discharges leave stale stays: {stale}");
    assert!(
        ledger["lost"]["DISCHARGE"].as_u64().unwrap() > 50,
        "{}",
        ledger["lost"]
    );
    assert_eq!(
        report["records_in"].as_u64().unwrap(),
        report["silver_rows"].as_u64().unwrap()
            + report["quarantined"].as_u64().unwrap()
            + report["duplicates"].as_u64().unwrap()
    );
}
