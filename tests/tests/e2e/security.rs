//! Security over the real binary: forged and broken tokens are refused at both doors; a
//! department clinician's token reaches only its department's rows however it asks (SQL
//! tricks, semantic filters, prepared statements, metadata calls, over REST and Flight SQL
//! with the ADBC driver); a network admin sees everything; every query is audited; signing
//! keys come from a tenant's OpenID discovery document or a JWKS file.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use patientflow_e2e::{Server, ingest, path, patientflow, produce, python_json};
use reqwest::blocking::Client;
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const AS_OF: &str = "2026-11-20T12:00:00Z";
/// The clinician's department.
const HOSPITAL: i64 = 3;
const DEPARTMENT: &str = "ICU";

fn network(dir: &Path) -> std::path::PathBuf {
    let landing = dir.join("landing");
    let data = dir.join("data");
    produce(&landing, 20_000, &["--seed", "21", "--until", AS_OF]);
    ingest(&landing, &data, &["--as-of", AS_OF]);
    data
}

fn sql(client: &Client, server: &Server, sql: &str) -> (u16, Value) {
    let response = client
        .post(server.url("/api/v1/sql"))
        .json(&json!({ "sql": sql }))
        .send()
        .expect("POST /api/v1/sql");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// The header and claims of a token (no checks).
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut next =
        || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (next(), next())
}

fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Flight SQL through ADBC with each token: the first error message per token, or "ok".
const FLIGHT_TOKENS: &str = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import adbc_driver_flightsql.dbapi as flight_sql
uri, tokens = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name, token in tokens.items():
    try:
        conn = flight_sql.connect(uri, db_kwargs={"adbc.flight.sql.authorization_header": "Bearer " + token})
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM gold.fact_admission")
        cur.fetchall()
        out[name] = "ok"
        conn.close()
    except Exception as e:
        out[name] = str(e)
print(json.dumps(out))
"#;

#[test]
fn forged_expired_and_foreign_tokens_are_refused_at_both_doors() {
    let dir = tempfile::tempdir().unwrap();
    let data = network(dir.path());
    let server = Server::start(&data, &[]);
    let valid = server.mint(&["--role", "network_admin"]);
    let (header, claims) = parts(&valid);
    let kid = header["kid"].as_str().unwrap().to_string();
    let pem = std::fs::read_to_string(&server.key).unwrap();
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let private = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let with = |patch: Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let t = now();
    let (h64, p64) = {
        let mut it = valid.split('.');
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    };
    let other_tenant =
        RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("another tenant's key");
    let other_key = EncodingKey::from_rsa_pem(
        other_tenant
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    let attacks: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.{p64}.", b64(&json!({"alg": "none", "typ": "JWT"}))),
        ),
        (
            "HS256 keyed with the RSA public key",
            jsonwebtoken::encode(
                &hs256,
                &claims,
                &EncodingKey::from_secret(public_pem.as_bytes()),
            )
            .unwrap(),
        ),
        (
            "expired",
            sign(
                &key,
                &kid,
                &with(json!({"exp": t - 3600, "nbf": t - 7200, "iat": t - 7200})),
            ),
        ),
        (
            "nbf in the future",
            sign(&key, &kid, &with(json!({"nbf": t + 3600, "exp": t + 7200}))),
        ),
        (
            "wrong iss",
            sign(
                &key,
                &kid,
                &with(json!({"iss": "https://login.microsoftonline.com/evil/v2.0"})),
            ),
        ),
        (
            "wrong aud",
            sign(&key, &kid, &with(json!({"aud": "api://someone-else"}))),
        ),
        ("unknown kid", sign(&key, "not-a-known-key", &claims)),
        (
            "tampered payload",
            format!(
                "{h64}.{}.{}",
                b64(&with(json!({"roles": ["PatientFlow.DataEngineer"]}))),
                valid.rsplit('.').next().unwrap()
            ),
        ),
        ("missing signature", format!("{h64}.{p64}.")),
        ("another tenant's key", sign(&other_key, &kid, &claims)),
        ("garbage", "garbage".to_string()),
    ];

    // REST: each refused with 401 and a message; the valid token answers.
    let (status, _) = sql(&server.client_with(&valid), &server, "SELECT 1");
    assert_eq!(status, 200, "the valid token works");
    for (name, token) in &attacks {
        let (status, body) = sql(&server.client_with(token), &server, "SELECT 1");
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{name}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid token") && !message.contains("panick"),
            "{name}: {message}"
        );
    }
    let metrics = Client::new()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("patientflow_unauthenticated_requests_total "))
        .unwrap();
    assert_eq!(refused, attacks.len().to_string(), "{metrics}");
    // No token: data endpoints 401, health and metrics open.
    let anonymous = Client::new();
    for p in [
        "/api/v1/kpis/census",
        "/api/v1/catalog",
        "/api/v1/quality/latest",
    ] {
        let status = anonymous.get(server.url(p)).send().unwrap().status();
        assert_eq!(status, 401, "{p}");
    }
    for p in ["/healthz", "/readyz", "/metrics", "/api/openapi.json", "/"] {
        let status = anonymous.get(server.url(p)).send().unwrap().status();
        assert_eq!(status, 200, "{p}");
    }

    // Flight SQL: UNAUTHENTICATED for each, the valid token answers.
    let mut tokens: serde_json::Map<String, Value> = attacks
        .iter()
        .map(|(n, t)| (n.to_string(), Value::from(t.clone())))
        .collect();
    tokens.insert("valid".into(), Value::from(valid.clone()));
    let flight = python_json(
        FLIGHT_TOKENS,
        &[
            &format!("grpc://{}", server.flight),
            &Value::Object(tokens).to_string(),
        ],
    );
    assert_eq!(flight["valid"], "ok");
    for (name, _) in &attacks {
        let error = flight[*name].as_str().unwrap();
        assert!(
            error.contains("UNAUTHENTICATED") || error.contains("Unauthenticated"),
            "{name}: {error}"
        );
        assert!(error.contains("invalid token"), "{name}: {error}");
    }
}

/// What a query of the escape suite must come back with.
#[derive(Debug)]
enum Expect {
    /// Rows, every one of the clinician's department (columns `hospital_id`/`hospital` and
    /// `department`).
    OwnRows,
    /// No rows.
    Empty,
    /// One row, one value.
    Value(i64),
    /// 403 forbidden.
    Denied,
    /// Refused with another 4xx (the name does not resolve).
    Refused,
    /// 200, and the answer's text contains this.
    Contains(&'static str),
    /// 200, and the answer's text lacks this.
    Lacks(&'static str),
}

/// The escape suite: a department clinician's token against REST and Flight SQL.
const FLIGHT_SCOPED: &str = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import adbc_driver_flightsql.dbapi as flight_sql
uri, token = sys.argv[1], sys.argv[2]
out = {}
conn = flight_sql.connect(uri, db_kwargs={"adbc.flight.sql.authorization_header": "Bearer " + token})
objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
out["tables"] = sorted(f'{s["db_schema_name"]}.{t["table_name"]}'
                       for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
cur = conn.cursor()
cur.execute("SELECT DISTINCT hospital_id, department FROM gold.fact_admission")
out["pairs"] = sorted([r[0], r[1]] for r in cur.fetchall())
cur.execute("SELECT count(*) FROM gold.fact_admission")
out["count"] = cur.fetchone()[0]
cur.execute("SELECT count(*) FROM gold.fact_admission WHERE hospital_id = ?", parameters=(1,))
out["prepared_foreign"] = cur.fetchone()[0]
cur.execute("SELECT count(*) FROM gold.fact_admission WHERE hospital_id = ?", parameters=(3,))
out["prepared_own"] = cur.fetchone()[0]
cur.execute("SELECT hospital, department FROM kpi.occupancy_hourly")
out["kpi_pairs"] = sorted(set((r[0], r[1]) for r in cur.fetchall()))
for name, q in [("silver", "SELECT count(*) FROM silver.patient_events"),
                ("quarantine", "SELECT raw_text FROM silver.quarantine")]:
    try:
        cur.execute(q); cur.fetchall(); out[name] = "ran"
    except Exception as e:
        out[name] = str(e)
try:
    conn.adbc_get_table_schema("patient_events", catalog_filter="patientflow", db_schema_filter="silver")
    out["silver_schema"] = "ran"
except Exception as e:
    out["silver_schema"] = str(e)
conn.close()
print(json.dumps(out))
"#;

/// The admin's view over ADBC.
const FLIGHT_ADMIN: &str = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import adbc_driver_flightsql.dbapi as flight_sql
uri, token = sys.argv[1], sys.argv[2]
conn = flight_sql.connect(uri, db_kwargs={"adbc.flight.sql.authorization_header": "Bearer " + token})
cur = conn.cursor()
cur.execute("SELECT count(*), count(DISTINCT hospital_id) FROM gold.fact_admission")
n, hospitals = cur.fetchone()
conn.close()
print(json.dumps({"count": n, "hospitals": hospitals}))
"#;

#[test]
fn a_department_token_sees_only_its_department_through_every_door() {
    let dir = tempfile::tempdir().unwrap();
    let data = network(dir.path());
    let server = Server::start(&data, &[]);
    let clinician_token = server.mint(&[
        "--role",
        "department_clinician",
        "--hospital",
        "3",
        "--department",
        DEPARTMENT,
        "--oid",
        "clinician-h3-icu",
    ]);
    let admin_token = server.mint(&["--role", "network_admin"]);
    let admin = server.client_with(&admin_token);
    let clinician = server.client_with(&clinician_token);

    // The truth, from the admin: the department's stays and patients, and a foreign patient.
    let own_where = format!("hospital_id = {HOSPITAL} AND department = '{DEPARTMENT}'");
    let (_, own) = sql(
        &admin,
        &server,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT patient_sk) AS p FROM gold.fact_admission WHERE {own_where}"
        ),
    );
    let own_stays = own["rows"][0]["n"].as_i64().unwrap();
    let own_patients = own["rows"][0]["p"].as_i64().unwrap();
    assert!(own_stays > 10, "the department has stays: {own}");
    let (_, foreign) = sql(
        &admin,
        &server,
        &format!("SELECT patient_id FROM gold.fact_admission WHERE NOT ({own_where}) LIMIT 1"),
    );
    let foreign_patient = foreign["rows"][0]["patient_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, all) = sql(
        &admin,
        &server,
        "SELECT count(*) AS n FROM gold.fact_admission",
    );
    assert!(all["rows"][0]["n"].as_i64().unwrap() > own_stays);

    let suite: Vec<(String, Expect)> = vec![
        ("SELECT hospital_id, department FROM gold.fact_admission".into(), Expect::OwnRows),
        ("SELECT hospital_id, department FROM gold.fact_admission WHERE hospital_id <> 3".into(), Expect::Empty),
        ("SELECT hospital_id, department FROM gold.fact_admission WHERE department = 'Emergency'".into(), Expect::Empty),
        ("SELECT count(*) FROM gold.fact_admission WHERE 1 = 1 OR true".into(), Expect::Value(own_stays)),
        ("SELECT hospital_id, department FROM (SELECT * FROM gold.fact_admission) t".into(), Expect::OwnRows),
        ("SELECT (SELECT count(*) FROM gold.fact_admission)".into(), Expect::Value(own_stays)),
        ("WITH everything AS (SELECT * FROM gold.fact_admission) SELECT hospital_id, department FROM everything".into(), Expect::OwnRows),
        ("SELECT hospital_id, department FROM gold.fact_admission WHERE hospital_id = 1 UNION SELECT hospital_id, department FROM gold.fact_census_hourly WHERE hospital_id = 2".into(), Expect::Empty),
        ("SELECT count(*) FROM gold.fact_admission a JOIN gold.fact_admission b ON a.hospital_id <> b.hospital_id".into(), Expect::Value(0)),
        ("SELECT count(*) FROM gold.fact_admission f JOIN silver.patient_events s ON f.encounter_id = s.encounter_id".into(), Expect::Denied),
        ("EXPLAIN ANALYZE SELECT count(*) FROM gold.fact_admission".into(), Expect::Contains("ICU")),
        ("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('silver', 'bronze')".into(), Expect::Empty),
        ("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'silver'".into(), Expect::Value(0)),
        ("SHOW TABLES".into(), Expect::Lacks("quarantine")),
        ("SELECT hospital_id, department FROM gold.fact_census_hourly".into(), Expect::OwnRows),
        ("SELECT hospital_id, department FROM gold.dim_department".into(), Expect::OwnRows),
        ("SELECT hospital_id, department FROM gold.fact_stay_segment".into(), Expect::OwnRows),
        ("SELECT hospital, department FROM kpi.occupancy_hourly".into(), Expect::OwnRows),
        ("SELECT hospital, department FROM kpi.bottlenecks".into(), Expect::OwnRows),
        ("SELECT hospital_id, department FROM PATIENTFLOW.GOLD.FACT_ADMISSION".into(), Expect::OwnRows),
        (r#"SELECT hospital_id, department FROM "patientflow"."gold"."fact_admission""#.into(), Expect::OwnRows),
        (r#"SELECT hospital_id, department FROM patientflow."GOLD".fact_admission"#.into(), Expect::Refused),
        ("SELECT count(*) FROM gold.dim_patient".into(), Expect::Value(own_patients)),
        (format!("SELECT count(*) FROM gold.fact_admission WHERE patient_id = '{foreign_patient}'"), Expect::Value(0)),
        ("SELECT count(bed_id) FROM gold.fact_admission".into(), Expect::Value(0)),
        ("SELECT raw_text FROM silver.quarantine".into(), Expect::Denied),
        ("SELECT * FROM patientflow.silver.patient_events".into(), Expect::Denied),
        ("SELECT * FROM ops.audit".into(), Expect::Denied),
        ("DESCRIBE silver.patient_events".into(), Expect::Denied),
        ("SELECT count(*) OVER () FROM gold.fact_admission LIMIT 1".into(), Expect::Value(own_stays)),
    ];
    assert!(suite.len() >= 25);
    for (query, expect) in &suite {
        let (status, body) = sql(&clinician, &server, query);
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        let context = format!("{query} → {status} {body}");
        match expect {
            Expect::OwnRows => {
                assert_eq!(status, 200, "{context}");
                assert!(!rows.is_empty(), "{context}");
                for r in &rows {
                    let hospital = r.get("hospital_id").or(r.get("hospital")).unwrap();
                    assert_eq!(hospital, HOSPITAL, "{context}");
                    assert_eq!(r["department"], DEPARTMENT, "{context}");
                }
            }
            Expect::Empty => {
                assert_eq!(status, 200, "{context}");
                assert!(rows.is_empty(), "{context}");
            }
            Expect::Value(v) => {
                assert_eq!(status, 200, "{context}");
                let first = rows[0].as_object().unwrap().values().next().unwrap();
                assert_eq!(first.as_i64(), Some(*v), "{context}");
            }
            Expect::Denied => {
                assert_eq!(status, 403, "{context}");
                assert_eq!(body["code"], "forbidden", "{context}");
            }
            Expect::Refused => assert!((400..500).contains(&status), "{context}"),
            Expect::Contains(text) => {
                assert_eq!(status, 200, "{context}");
                assert!(body.to_string().contains(text), "{context}");
            }
            Expect::Lacks(text) => {
                assert_eq!(status, 200, "{context}");
                assert!(!body.to_string().contains(text), "{context}");
            }
        }
    }

    // Semantic queries: a foreign filter finds nothing; by department, only the own one.
    let post = |url: &str, body: Value| {
        let r = clinician.post(server.url(url)).json(&body).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let (status, foreign) = post(
        "/api/v1/query",
        json!({"metrics": ["admissions"], "dimensions": ["hospital"], "filters": {"hospital": [1, 2]}}),
    );
    assert_eq!(status, 200, "{foreign}");
    let admitted: i64 = foreign["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["admissions"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(admitted, 0, "{foreign}");
    let (status, other_department) = post(
        "/api/v1/query",
        json!({"metrics": ["admissions", "census"], "filters": {"department": ["Emergency", "Surgery"]}}),
    );
    assert_eq!(status, 200, "{other_department}");
    for r in other_department["rows"].as_array().unwrap() {
        for m in ["admissions", "census"] {
            assert_eq!(r[m].as_i64().unwrap_or(0), 0, "{other_department}");
        }
    }
    let census = clinician
        .get(server.url("/api/v1/kpis/census?dimensions=hospital,department"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    for r in census["rows"].as_array().unwrap() {
        assert_eq!(
            (r["hospital"].as_i64(), r["department"].as_str()),
            (Some(HOSPITAL), Some(DEPARTMENT)),
            "{census}"
        );
    }
    let catalog = clinician
        .get(server.url("/api/v1/catalog"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    let schemas: Vec<&str> = catalog["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["schema"].as_str().unwrap())
        .collect();
    assert!(
        schemas.contains(&"gold") && !schemas.contains(&"silver"),
        "{schemas:?}"
    );

    // Flight SQL through the ADBC driver with the scoped token.
    let flight = python_json(
        FLIGHT_SCOPED,
        &[&format!("grpc://{}", server.flight), &clinician_token],
    );
    let tables = flight["tables"].as_array().unwrap();
    assert!(tables.contains(&json!("gold.fact_admission")), "{tables:?}");
    assert!(
        !tables
            .iter()
            .any(|t| t.as_str().unwrap().starts_with("silver")),
        "{tables:?}"
    );
    assert_eq!(flight["pairs"], json!([[HOSPITAL, DEPARTMENT]]));
    assert_eq!(flight["count"], own_stays);
    assert_eq!(flight["prepared_foreign"], 0);
    assert_eq!(flight["prepared_own"], own_stays);
    assert_eq!(flight["kpi_pairs"], json!([[HOSPITAL, DEPARTMENT]]));
    for key in ["silver", "quarantine"] {
        let error = flight[key].as_str().unwrap();
        assert!(
            error.contains("PERMISSION_DENIED") || error.contains("permission denied"),
            "{key}: {error}"
        );
    }
    assert_ne!(flight["silver_schema"], "ran");

    // The network admin's token, same driver: every row of every hospital.
    let admin_view = python_json(
        FLIGHT_ADMIN,
        &[
            &format!("grpc://{}", server.flight),
            &admin_token,
            path(&data),
        ],
    );
    // Counted independently from the Delta table.
    let direct = patientflow_e2e::scalar(&data, "gold/fact_admission", "SELECT count(*) FROM t");
    assert_eq!(admin_view["count"], direct);
    assert_eq!(admin_view["hospitals"], 7);

    // Every query was audited: the clinician's refusals and answers are in ops/audit.
    let engineer = server.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let audit = loop {
        let (status, body) = sql(
            &engineer,
            &server,
            "SELECT door, outcome, count(*) AS n FROM ops.audit WHERE principal_oid = 'clinician-h3-icu' GROUP BY 1, 2 ORDER BY 1, 2",
        );
        let doors: Vec<String> = body["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        format!(
                            "{}:{}",
                            r["door"].as_str().unwrap(),
                            r["outcome"].as_str().unwrap()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if status == 200
            && doors.contains(&"flight:denied".to_string())
            && doors.contains(&"rest:denied".to_string())
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "audit incomplete: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let total: i64 = audit["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .sum();
    assert!(total >= suite.len() as i64, "{audit}");
    let (_, sample) = sql(
        &engineer,
        &server,
        "SELECT roles, tables, statement_sha256, rows_returned FROM ops.audit WHERE principal_oid = 'clinician-h3-icu' AND outcome = 'ok' AND door = 'rest' LIMIT 1",
    );
    let row = &sample["rows"][0];
    assert_eq!(
        row["roles"],
        json!(["PatientFlow.Clinician.3.ICU"]),
        "{sample}"
    );
    assert_eq!(
        row["statement_sha256"].as_str().unwrap().len(),
        64,
        "{sample}"
    );
}

/// Serves `files` (path → JSON, `{addr}` replaced by the server's address) over HTTP on
/// loopback until the test ends; returns the address and a count of requests served.
fn serve_json(files: Vec<(String, Value)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let returned = addr.clone();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let wanted = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = match files.iter().find(|(p, _)| *p == wanted) {
                Some((_, v)) => ("200 OK", v.to_string().replace("{addr}", &addr)),
                None => ("404 Not Found", "{}".to_string()),
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (returned, served)
}

#[test]
fn entra_keys_come_from_discovery_or_a_jwks_file_and_bad_policies_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = network(dir.path());
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let encoding =
        EncodingKey::from_rsa_pem(key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let jwks = json!({"keys": [{
        "kty": "RSA", "use": "sig", "kid": "tenant-key-1",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    }]});
    let t = now();
    let token = |iss: String, tid: &str| {
        sign(
            &encoding,
            "tenant-key-1",
            &json!({"iss": iss, "aud": "api://patientflow", "tid": tid, "oid": "user-1",
                    "roles": ["PatientFlow.NetworkAdmin"], "iat": t, "nbf": t, "exp": t + 600}),
        )
    };
    let v2 = token(
        format!("https://login.microsoftonline.com/{tenant}/v2.0"),
        tenant,
    );
    // Group membership: the example policy's "H1 Emergency staff" group, listed or overaged.
    let grouped = |extra: Value| {
        let mut claims = json!({"iss": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
            "aud": "api://patientflow", "tid": tenant, "oid": "user-2",
            "iat": t, "nbf": t, "exp": t + 600});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        sign(&encoding, "tenant-key-1", &claims)
    };
    let in_group = grouped(json!({"groups": ["7f0c2f4e-1b9a-4d5e-9c3a-2e1d0b6a5f41"]}));
    let overage = grouped(json!({"_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/user-2/getMemberObjects"}}}));
    let v1 = token(format!("https://sts.windows.net/{tenant}/"), tenant);
    let other_tenant = token(
        format!("https://login.microsoftonline.com/{tenant}/v2.0"),
        "00000000-1111-2222-3333-444444444444",
    );

    // Discovery: the tenant's OpenID document names its JWKS.
    let (idp, idp_requests) = serve_json(vec![
        (
            format!("/{tenant}/v2.0/.well-known/openid-configuration"),
            json!({"issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                   "jwks_uri": "http://{addr}/discovery/keys"}),
        ),
        ("/discovery/keys".into(), jwks.clone()),
    ]);
    let server = Server::start(
        &data,
        &[
            "--tenant",
            tenant,
            "--openid-config",
            &format!("http://{idp}/{tenant}/v2.0/.well-known/openid-configuration"),
        ],
    );
    let (status, body) = sql(
        &server.client_with(&in_group),
        &server,
        "SELECT DISTINCT hospital_id, department FROM gold.fact_admission",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"hospital_id": 1, "department": "Emergency"}])
    );
    let (status, body) = sql(&server.client_with(&overage), &server, "SELECT 1");
    assert_eq!(
        status, 403,
        "an overage grants no groups (and no Graph call): {body}"
    );
    for (name, token, expected) in [
        ("v2", &v2, 200),
        ("v1", &v1, 200),
        ("other tenant", &other_tenant, 401),
    ] {
        let (status, body) = sql(
            &server.client_with(token),
            &server,
            "SELECT count(*) FROM gold.fact_admission",
        );
        assert_eq!(status, expected, "{name}: {body}");
    }
    // Unknown kids fetch the keys again at most once a minute: a burst of forged kids costs
    // the identity provider one request (discovery document + JWKS), not one per token.
    let before = idp_requests.load(Ordering::SeqCst);
    for i in 0..10 {
        let forged = sign(
            &encoding,
            &format!("made-up-{i}"),
            &json!({"iss": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                    "aud": "api://patientflow", "tid": tenant, "oid": "x",
                    "iat": t, "nbf": t, "exp": t + 600}),
        );
        assert_eq!(
            sql(&server.client_with(&forged), &server, "SELECT 1").0,
            401
        );
    }
    let fetched = idp_requests.load(Ordering::SeqCst) - before;
    assert!(
        fetched <= 2,
        "{fetched} requests to the identity provider for 10 unknown kids"
    );
    drop(server);

    // A JWKS file, for a site without a route to Entra ID.
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let server = Server::start(
        &data,
        &[
            "--jwks-file",
            path(&jwks_file),
            "--issuer",
            &format!("https://login.microsoftonline.com/{tenant}/v2.0"),
        ],
    );
    let (status, body) = sql(&server.client_with(&v2), &server, "SELECT 1");
    assert_eq!(status, 200, "{body}");
    let (status, _) = sql(&server.client_with(&v1), &server, "SELECT 1");
    assert_eq!(status, 401, "the v1 issuer was not configured");
    drop(server);

    // A bad policy file stops start-up, naming file, line and problem.
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("nurses.yaml"),
        "roles:\n  nurse:\n    app_role: Nurse.{hospital}\n    scope: department\n    tables: [gold.*]\n",
    )
    .unwrap();
    let out = patientflow()
        .args(["serve", "--data", path(&data), "--dev-tokens"])
        .args(["--dev-key", path(&dir.path().join("k.pem"))])
        .args(["--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0"])
        .args(["--policies", path(&policies)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nurses.yaml:3:"), "{stderr}");
    assert!(stderr.contains("{department}"), "{stderr}");

    // Without any issuer the server refuses to start and says what to pass.
    let out = patientflow()
        .args(["serve", "--data", path(&data)])
        .args(["--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant"));
}
