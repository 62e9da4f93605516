//! The query service over the real binary on loopback: the ADBC Flight SQL driver (PyPI
//! `adbc-driver-flightsql`) and the REST API answer the same KPIs, equal to what an
//! independent reader (Python `deltalake` + pyarrow) computes from the gold tables; the
//! OpenAPI document validates; new commits show without a restart; the dashboard renders in
//! headless Chromium; a runaway query is cancelled while KPI queries keep answering.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use patientflow_e2e::{Server, ingest, path, produce, python_json};
use reqwest::blocking::Client;
use serde_json::{Value, json};

const AS_OF: &str = "2026-11-20T12:00:00Z";

/// 20k ADT events up to the as-of time, through gold.
pub(crate) fn network(dir: &Path, seed: &str) -> std::path::PathBuf {
    let landing = dir.join("landing");
    let data = dir.join("data");
    produce(&landing, 20_000, &["--seed", seed, "--until", AS_OF]);
    ingest(&landing, &data, &["--as-of", AS_OF]);
    data
}

/// A served network: the folder (kept alive with it), the table root and the server.
pub(crate) fn serving(
    seed: &str,
    extra: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let data = network(dir.path(), seed);
    let server = Server::start(&data, extra);
    (dir, data, server)
}

/// Through Flight SQL with ADBC, and straight from the Delta tables with pyarrow.
const ADBC: &str = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.compute as pc
from deltalake import DeltaTable
uri, root = sys.argv[1], sys.argv[2]
out = {}
conn = flight_sql.connect(uri, db_kwargs={"adbc.flight.sql.authorization_header": "Bearer " + sys.argv[3]})
objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
out["catalogs"] = [c["catalog_name"] for c in objects]
out["tables"] = sorted(f'{s["db_schema_name"]}.{t["table_name"]}'
                       for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
out["census_schema"] = [f.name for f in conn.adbc_get_table_schema(
    "fact_census_hourly", catalog_filter="patientflow", db_schema_filter="gold")]
cur = conn.cursor()
cur.execute("SELECT hospital, department, census FROM kpi.occupancy_hourly "
            "WHERE period = (SELECT max(period) FROM kpi.occupancy_hourly)")
out["census_flight"] = {f'{r[0]}|{r[1]}': r[2] for r in cur.fetchall()}
cur.execute("SELECT count(*) FROM gold.fact_admission WHERE hospital_id = ?", parameters=(3,))
out["prepared_count"] = cur.fetchone()[0]
# Prepared without parameters, the query starts at once; the cursor's second run of the same
# statement skips the prepare and is planned and run anew.
twice = []
for _ in range(2):
    cur.execute("SELECT count(*) FROM gold.fact_admission WHERE hospital_id = 3")
    twice.append(cur.fetchone()[0])
out["unbound_twice"] = twice
cur.execute("SELECT CAST(period AS VARCHAR), admissions FROM kpi.flow_daily "
            "WHERE hospital = 3 AND department = 'ICU' AND admissions > 0 ORDER BY 1")
out["icu3_flight"] = [[r[0][:10], r[1]] for r in cur.fetchall()]
try:
    cur.execute("DELETE FROM gold.fact_admission")
    out["delete"] = "ran"
except Exception as e:
    out["delete"] = str(e)
# Fails while running, after GetFlightInfo has answered: the error reaches the client all the same.
try:
    cur.execute("SELECT CAST(department AS INT) FROM gold.fact_admission")
    cur.fetchall()
    out["runtime_error"] = "ran"
except Exception as e:
    out["runtime_error"] = str(e)
cur.execute("SELECT count(*) FROM gold.fact_admission WHERE hospital_id = ?", parameters=(3,))
out["after_error"] = cur.fetchone()[0]
conn.close()

census = DeltaTable(f"{root}/gold/fact_census_hourly").to_pyarrow_table()
last = pc.max(census["hour_start"])
at = census.filter(pc.equal(census["hour_start"], last))
direct = {}
for h, d, c in zip(at["hospital_id"].to_pylist(), at["department"].to_pylist(), at["census"].to_pylist()):
    direct[f"{h}|{d}"] = direct.get(f"{h}|{d}", 0) + c
out["census_direct"] = direct
stays = DeltaTable(f"{root}/gold/fact_admission").to_pyarrow_table()
out["count_direct"] = pc.sum(pc.equal(stays["hospital_id"], 3)).as_py()
icu3 = stays.filter(pc.and_(pc.equal(stays["hospital_id"], 3), pc.equal(stays["department"], "ICU")))
days = {}
for t in icu3["admission_time"].to_pylist():
    days[t.strftime("%Y-%m-%d")] = days.get(t.strftime("%Y-%m-%d"), 0) + 1
out["icu3_direct"] = sorted([k, v] for k, v in days.items())
print(json.dumps(out))
"#;

const OPENAPI: &str = r#"
import json, sys, urllib.request
from openapi_spec_validator import validate
doc = json.load(urllib.request.urlopen(sys.argv[1]))
validate(doc)
print(json.dumps({"valid": True, "paths": sorted(doc["paths"])}))
"#;

pub(crate) fn get(client: &Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().expect("GET");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

pub(crate) fn post(client: &Client, url: &str, body: &Value) -> (u16, Value) {
    let response = client.post(url).json(body).send().expect("POST");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The Prometheus text of `/metrics`.
pub(crate) fn metrics(client: &Client, server: &Server) -> String {
    client
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// `rows` of a JSON result as `hospital|department` → `metric`.
fn by_department(result: &Value, metric: &str) -> BTreeMap<String, i64> {
    result["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                format!(
                    "{}|{}",
                    r["hospital"],
                    r["department"].as_str().unwrap_or_default()
                ),
                r[metric].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

fn as_map(v: &Value) -> BTreeMap<String, i64> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or_default()))
        .collect()
}

#[test]
fn flight_sql_and_rest_answer_the_same_kpis_as_an_independent_reader() {
    let (_dir, data, server) = serving("11", &[]);
    let client = server.client();

    let adbc = python_json(
        ADBC,
        &[
            &format!("grpc://{}", server.flight),
            path(&data),
            &server.token,
        ],
    );
    assert_eq!(adbc["catalogs"], json!(["patientflow"]));
    let tables: Vec<&str> = adbc["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "gold.fact_admission",
        "gold.fact_census_hourly",
        "gold.dim_patient",
        "kpi.occupancy_hourly",
        "kpi.bottlenecks",
        "silver.quarantine",
        "ops.quality_runs",
    ] {
        assert!(tables.contains(&t), "{t} missing from {tables:?}");
    }
    assert!(
        !tables.iter().any(|t| t.starts_with("bronze")),
        "bronze is internal"
    );
    assert_eq!(adbc["census_schema"][0], "hour_start");
    // KPIs over Flight SQL equal the independent computation.
    let direct = as_map(&adbc["census_direct"]);
    assert!(
        direct.values().sum::<i64>() > 0,
        "the network has patients in beds"
    );
    assert_eq!(as_map(&adbc["census_flight"]), direct);
    assert_eq!(adbc["prepared_count"], adbc["count_direct"]);
    assert_eq!(
        adbc["unbound_twice"],
        json!([adbc["count_direct"], adbc["count_direct"]])
    );
    assert!(adbc["count_direct"].as_i64().unwrap() > 0);
    assert_eq!(adbc["icu3_flight"], adbc["icu3_direct"]);
    assert!(
        adbc["delete"]
            .as_str()
            .unwrap()
            .contains("`DELETE` statements are not allowed"),
        "{}",
        adbc["delete"]
    );

    let runtime_error = adbc["runtime_error"].as_str().unwrap();
    assert!(
        runtime_error.contains("INVALID_ARGUMENT") && runtime_error.contains("Int32"),
        "{runtime_error}"
    );
    assert_eq!(adbc["after_error"], adbc["count_direct"]);

    // REST answers the same numbers.
    let (status, census) = get(
        &client,
        &server.url("/api/v1/kpis/census?dimensions=hospital,department"),
    );
    assert_eq!(status, 200, "{census}");
    assert_eq!(by_department(&census, "census"), direct);
    let (status, flow) = post(
        &client,
        &server.url("/api/v1/query"),
        &json!({"metrics": ["admissions"], "dimensions": ["hospital", "department"], "grain": "day",
                "filters": {"hospital": [3], "department": ["ICU"]}}),
    );
    assert_eq!(status, 200, "{flow}");
    let icu3: Vec<Value> = flow["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["admissions"].as_i64().unwrap_or_default() > 0)
        .map(|r| json!([r["period"].as_str().unwrap()[..10], r["admissions"]]))
        .collect();
    assert_eq!(Value::from(icu3), adbc["icu3_direct"]);

    // SQL in JSON, CSV and Arrow IPC.
    let sql = json!({"sql": "SELECT hospital_id, count(*) AS stays FROM gold.fact_admission GROUP BY 1 ORDER BY 1"});
    let (status, body) = post(&client, &server.url("/api/v1/sql"), &sql);
    assert_eq!(status, 200);
    assert_eq!(body["row_count"], 7);
    let csv = client
        .post(server.url("/api/v1/sql"))
        .header("accept", "text/csv")
        .json(&sql)
        .send()
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().unwrap();
    assert_eq!(csv.lines().next(), Some("hospital_id,stays"));
    assert_eq!(csv.lines().count(), 8);
    let arrow = client
        .post(server.url("/api/v1/sql"))
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&sql)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let reader =
        deltalake::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 7);

    // Errors say what to do, with stable codes.
    let (status, err) = get(&client, &server.url("/api/v1/kpis/occupancy"));
    assert_eq!(status, 400);
    assert_eq!(err["code"], "invalid_query");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("known: admissions"),
        "{err}"
    );
    let (status, err) = post(
        &client,
        &server.url("/api/v1/sql"),
        &json!({"sql": "DROP TABLE gold.dim_date"}),
    );
    assert_eq!((status, err["code"].as_str()), (403, Some("not_read_only")));
    let (status, err) = post(
        &client,
        &server.url("/api/v1/sql"),
        &json!({"sql": "SELECT nope FROM gold.dim_date"}),
    );
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_query")),
        "{err}"
    );

    // Quality, catalog, health, metrics, OpenAPI.
    let (status, quality) = get(&client, &server.url("/api/v1/quality/latest"));
    assert_eq!(status, 200);
    assert_eq!(quality["records_in"], 20_000);
    let (_, catalog) = get(&client, &server.url("/api/v1/catalog"));
    assert_eq!(catalog["bottleneck_threshold"], 0.85);
    assert!(
        catalog["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "ed_wait_p90_minutes")
    );
    assert_eq!(
        client.get(server.url("/healthz")).send().unwrap().status(),
        200
    );
    assert_eq!(
        client.get(server.url("/readyz")).send().unwrap().status(),
        200
    );
    let metrics = metrics(&client, &server);
    assert!(metrics.contains("patientflow_queries_total"), "{metrics}");
    let openapi = python_json(OPENAPI, &[&server.url("/api/openapi.json")]);
    assert_eq!(openapi["valid"], true);
    for p in [
        "/api/v1/kpis/{metric}",
        "/api/v1/query",
        "/api/v1/sql",
        "/api/v1/quality/latest",
        "/api/v1/catalog",
        "/metrics",
    ] {
        assert!(
            openapi["paths"].as_array().unwrap().contains(&json!(p)),
            "{p} not documented"
        );
    }

    // A statement prepared without parameters runs at once, before the client asks for it:
    // preparing alone answers one query more.
    let before = queries_answered(&client, &server);
    let prepared = python_json(
        PREPARE_ONLY,
        &[&format!("grpc://{}", server.flight), &server.token],
    );
    assert_eq!(prepared["parameters"], 0);
    let started = Instant::now();
    while queries_answered(&client, &server) == before
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(queries_answered(&client, &server), before + 1);
}

const PREPARE_ONLY: &str = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import adbc_driver_flightsql.dbapi as flight_sql
conn = flight_sql.connect(sys.argv[1], db_kwargs={"adbc.flight.sql.authorization_header": "Bearer " + sys.argv[2]})
cur = conn.cursor()
params = cur.adbc_prepare("SELECT count(*) FROM gold.fact_admission WHERE hospital_id = 5")
print(json.dumps({"parameters": len(params) if params is not None else 0}))
"#;

/// `patientflow_queries_total` from `/metrics`.
fn queries_answered(client: &Client, server: &Server) -> u64 {
    let text = metrics(client, server);
    text.lines()
        .find_map(|l| l.strip_prefix("patientflow_queries_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no patientflow_queries_total in {text}"))
}

#[test]
fn cached_results_last_until_a_new_commit() {
    let (dir, data, server) = serving("12", &[]);
    let client = server.client();
    let url = server.url("/api/v1/kpis/admissions");
    let (_, first) = get(&client, &url);
    let (_, second) = get(&client, &url);
    assert_eq!(first["cached"], false);
    assert_eq!(second["cached"], true);
    assert_eq!(first["rows"], second["rows"]);

    // More events land while the server runs: the next query sees them, no restart.
    let more = dir.path().join("more");
    produce(&more, 5_000, &["--seed", "13", "--until", AS_OF]);
    ingest(&more, &data, &["--as-of", AS_OF]);
    let (_, third) = get(&client, &url);
    assert_eq!(third["cached"], false);
    let count = |v: &Value| v["rows"][0]["admissions"].as_i64().unwrap();
    assert!(
        count(&third) > count(&first),
        "{} then {}",
        count(&first),
        count(&third)
    );
}

#[test]
fn a_runaway_query_is_cancelled_while_kpi_queries_still_answer() {
    let (_dir, _data, server) = serving("14", &["--query-timeout", "4"]);
    let client = server.client();
    let runaway_url = server.url("/api/v1/sql");
    let runaway_client = client.clone();
    let started = Instant::now();
    let runaway = std::thread::spawn(move || {
        post(
            &runaway_client,
            &runaway_url,
            // A join on inequalities: nested loops over 10⁴ × 10⁴ × 10⁴ rows (a plain
            // CROSS JOIN count is answered from statistics).
            &json!({"sql": "SELECT count(*) FROM gold.fact_admission a \
                            JOIN gold.fact_admission b ON a.stay_key < b.stay_key \
                            JOIN gold.fact_census_hourly c ON c.census + a.transfers > b.transfers"}),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    // KPI queries keep answering while it runs.
    let mut answered = 0;
    while !runaway.is_finished() && started.elapsed() < Duration::from_secs(30) {
        let (status, body) = post(
            &client,
            &server.url("/api/v1/query"),
            &json!({"metrics": ["admissions", "census"], "dimensions": ["hospital"], "limit": 100 + answered}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["row_count"], 7);
        answered += 1;
    }
    let (status, body) = runaway.join().unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "query_timeout");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cancelled after"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cancelled late: {:?}",
        started.elapsed()
    );
    assert!(answered >= 1, "no KPI query finished while the runaway ran");
    // The server keeps serving.
    assert_eq!(get(&client, &server.url("/api/v1/kpis/census")).0, 200);
    let metrics = metrics(&client, &server);
    assert!(
        metrics.contains("patientflow_query_timeouts_total 1"),
        "{metrics}"
    );
}

/// Headless Chromium on the dashboard, signed in as a network admin, with `extra` arguments
/// (`--dump-dom`, `--screenshot=…`).
fn chromium(server: &Server, extra: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", path(profile.path())))
        .args(extra)
        .arg(format!(
            "{}#token={}",
            server.url("/"),
            server.mint(&["--role", "network_admin"])
        ))
        .output()
        .expect("run chromium (installed by .ci/setup: apt-get install chromium)")
}

#[test]
fn the_dashboard_renders_live_data_in_headless_chromium() {
    let (_dir, _data, server) = serving("15", &[]);
    let chromium = |extra: &[&str]| chromium(&server, extra);
    let dom = chromium(&["--dump-dom"]);
    let html = String::from_utf8_lossy(&dom.stdout);
    let console = String::from_utf8_lossy(&dom.stderr);
    assert!(
        html.contains(r#"data-status="ready""#),
        "dashboard did not finish: {html}"
    );
    assert!(
        html.contains(r#"<pre id="errors" hidden="">"#),
        "the page reported errors: {html}"
    );
    let marks: Vec<usize> = html
        .split("data-marks=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect();
    assert!(
        marks.len() >= 6 && marks.iter().all(|m| *m > 0),
        "charts without data: {marks:?}"
    );
    assert!(
        html.contains("Hospital 7"),
        "the occupancy grid lists every hospital"
    );
    // Received just now, with events up to the census time (a future-time defect, no longer in
    // the future at receipt, even beyond it): the header is neither late nor catching up.
    let header = asof_header(&html);
    assert!(
        header.starts_with(r#" class="muted" "#)
            && header.contains(">data as of ")
            && !header.contains("catching up"),
        "{header}"
    );
    // Emergency waits read "H h MM min" with MM under 60 (rounding once showed "22 h 60 min").
    let waits: Vec<u32> = html
        .split(" min</td>")
        .filter_map(|s| s.rsplit(" h ").next()?.parse().ok())
        .collect();
    assert!(
        !waits.is_empty() && waits.iter().all(|m| *m < 60),
        "emergency waits: {waits:?}"
    );
    // Each listed bottleneck names its long-open stays exactly when the quality report has
    // them for that ward (a ward over its beds usually holds discharges that never came).
    let (_, quality) = get(&server.client(), &server.url("/api/v1/quality/latest"));
    let long_open: BTreeMap<String, u64> = quality["open_stays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let ward = format!(
                "Hospital {} · {}",
                o["hospital_id"],
                o["department"].as_str().unwrap()
            );
            (ward, o["long_open"].as_u64().unwrap())
        })
        .collect();
    let listed: Vec<&str> = html
        .split(r#"<ul id="bottlenecks">"#)
        .nth(1)
        .and_then(|s| s.split("</ul>").next())
        .expect("the bottleneck list")
        .split("<li>")
        .skip(1)
        .filter_map(|li| li.split("</li>").next())
        .collect();
    assert!(!listed.is_empty(), "no bottleneck listed: {html}");
    // The grid names them on hover, every ward's: as many as the report has, in all.
    let named: Vec<u64> = html
        .split(r#" long-open: no news past the ward's warning)""#)
        .filter_map(|s| s.rsplit(" patients (").next()?.parse().ok())
        .collect();
    let reported: Vec<u64> = long_open.values().copied().filter(|n| *n > 0).collect();
    assert!(
        !reported.is_empty(),
        "this network (seed 15) has long-open stays"
    );
    assert_eq!(
        (named.len(), named.iter().sum::<u64>()),
        (reported.len(), reported.iter().sum::<u64>()),
        "long-open stays named in the grid against the quality report's {long_open:?}"
    );
    for li in listed {
        let (ward, text) = li.split_once(": ").expect("ward: patients");
        match long_open.get(ward).copied().unwrap_or(0) {
            0 => assert!(
                !text.contains("long-open"),
                "{li}: none in the quality report"
            ),
            n => assert!(
                text.contains(&format!("({n} long-open")),
                "{li}: {n} in the quality report"
            ),
        }
    }
    let console_errors: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("rror")))
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors: {console_errors:?}"
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[
        "--window-size=1400,1700",
        &format!("--screenshot={}", path(&shot)),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 50_000,
        "a screenshot of drawn charts, not a blank page ({} bytes)",
        png.len()
    );
}

/// The attributes and text of the dashboard's header line (`<p id="asof" …>…</p>`).
fn asof_header(html: &str) -> &str {
    html.split(r#"id="asof""#)
        .nth(1)
        .and_then(|s| s.split("</p>").next())
        .expect("the header")
}

/// Records of the past arriving now (a backlog, the demo's replay): their receipt is fresh, but
/// gold's figures "now" lack every event since the newest one, and the header says so.
#[test]
fn a_backlog_arriving_now_shows_the_dashboard_catching_up() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    // Future-time defects are left out: received weeks after the simulated history, the times
    // they hold are no longer in the future and would pass as its newest events.
    let no_future = ["--until", AS_OF, "--defect-rate", "future_admission_time=0"];
    produce(&landing, 2000, &no_future);
    ingest(&landing, &data, &["--as-of", "2026-11-21T12:00:00Z"]);
    // Then a late event and a future one (silver sets its time to its receipt): neither is a
    // newer event than the history's last.
    let event = |id: &str, time: &str| {
        json!({
            "age": 47, "bed_id": 101, "department": "ICU", "hospital_id": 1, "gender": "Female",
            "encounter_id": id, "event_id": id, "event_time": time, "event_type": "ADMIT",
            "patient_id": id,
        })
    };
    let late = event("e2e-late", "2026-11-01T00:00:00Z");
    let future = event("e2e-future", "2027-01-01T00:00:00Z");
    std::fs::write(landing.join("late.ndjson"), format!("{late}\n{future}\n")).unwrap();
    let again = ingest(&landing, &data, &["--as-of", "2026-11-21T12:00:00Z"]);
    assert_eq!(again["records_in"], 2, "{again}");
    let server = Server::start(&data, &[]);
    let (status, fresh) = get(&server.client(), &server.url("/api/v1/freshness"));
    assert_eq!(status, 200);
    assert_eq!(
        fresh["census_as_of"], "2026-11-21T12:00:00+00:00",
        "{fresh}"
    );
    let events_as_of =
        chrono::DateTime::parse_from_rfc3339(fresh["events_as_of"].as_str().unwrap()).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(AS_OF).unwrap();
    assert!(
        events_as_of <= until && events_as_of > until - chrono::Duration::days(1),
        "the history's last event: {fresh}"
    );
    let behind = fresh["events_behind_seconds"].as_f64().unwrap();
    assert_eq!(
        behind,
        (86_400_000_000 + (until - events_as_of).num_microseconds().unwrap()) as f64 / 1e6
    );
    assert!(
        fresh["seconds_behind"].as_f64().unwrap() < 600.0,
        "received just now: {fresh}"
    );

    let html = String::from_utf8(chromium(&server, &["--dump-dom"]).stdout).unwrap();
    let header = asof_header(&html);
    assert!(
        header.starts_with(r#" class="muted late" "#),
        "amber: {header}"
    );
    assert!(
        header.contains(&format!(
            "catching up: events up to {} UTC",
            events_as_of.format("%Y-%m-%d %H:%M")
        )),
        "{header}"
    );
}

#[test]
fn flight_sql_serves_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let data = network(dir.path(), "16");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let openssl = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-keyout", path(&key), "-out", path(&cert)])
        .output()
        .expect("openssl");
    assert!(
        openssl.status.success(),
        "{}",
        String::from_utf8_lossy(&openssl.stderr)
    );
    let server = Server::start(&data, &["--tls-cert", path(&cert), "--tls-key", path(&key)]);
    let script = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import adbc_driver_flightsql.dbapi as flight_sql
from adbc_driver_flightsql import DatabaseOptions
conn = flight_sql.connect(sys.argv[1], db_kwargs={DatabaseOptions.TLS_ROOT_CERTS.value: open(sys.argv[2]).read(),
                                                  DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + sys.argv[3]})
cur = conn.cursor()
cur.execute("SELECT count(*) FROM gold.dim_department")
n = cur.fetchone()[0]
cur.close(); conn.close()
print(json.dumps({"departments": n}))
"#;
    let out = python_json(
        script,
        &[
            &format!("grpc+tls://{}", server.flight),
            path(&cert),
            &server.token,
        ],
    );
    assert_eq!(
        out["departments"], 49,
        "7 hospitals x 7 departments over TLS"
    );
}
