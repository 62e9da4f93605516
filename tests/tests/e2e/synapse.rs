//! `synapse plan` over a real root (every batch parsed by sqlfluff's T-SQL dialect; a new
//! attribute column alters its views) and `synapse apply` against Microsoft's
//! `mssql-mock-tds` over TDS with TLS on loopback: SQL and token logins, batches in order, a
//! failing batch stopping the run with a correct report. (The mock serves routing redirects
//! only without TLS, which `apply` never turns off, so the redirect is not exercised here.)

use std::path::Path;
use std::sync::{Arc, Mutex};

use mssql_mock_tds::{MockTdsServer, QueryResponse, TerminalError};
use patientflow_e2e::{ingest, path, patientflow, produce, python, run_ok};
use serde_json::Value;

const LOCATION: &str = "https://contosolake.dfs.core.windows.net/lake/patientflow";
const MASK_KEY: &str = "e2e-mask-key-not-a-real-secret";

fn plan_json(data: &Path) -> Value {
    let out = run_ok(&[
        "synapse",
        "plan",
        "--data",
        path(data),
        "--location",
        LOCATION,
        "--format",
        "json",
    ]);
    serde_json::from_str(&out).unwrap()
}

fn batches(plan: &Value) -> Vec<(String, String)> {
    plan["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["sql"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A config tracking `preferred_language` as a patient attribute (contract §1.3).
fn tracking_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("patientflow.toml");
    std::fs::write(
        &config,
        "[gold]\ntracked_attributes = [\"insurance_type\", \"preferred_language\"]\n",
    )
    .unwrap();
    config
}

/// Lands one more event: a new patient's admission carrying a new attribute.
fn ingest_preferred_language(landing: &Path, data: &Path, config: &Path) {
    let record = serde_json::json!({
        "event_id": "e2e-triage-level-0001",
        "event_type": "ADMIT",
        "event_time": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
        "patient_id": "e2e-triage-patient",
        "encounter_id": "e2e-triage-encounter",
        "hospital_id": 1,
        "department": "Cardiology",
        "bed_id": 1,
        "gender": "Female",
        "age": 50,
        "preferred_language": "Spanish",
    });
    std::fs::write(landing.join("events-999999.ndjson"), format!("{record}\n")).unwrap();
    run_ok(&[
        "--config",
        path(config),
        "ingest",
        "--from",
        path(landing),
        "--data",
        path(data),
    ]);
}

#[test]
fn the_plan_of_a_real_root_parses_as_t_sql_and_a_new_attribute_alters_its_views() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    let config = tracking_config(dir.path());
    produce(&landing, 3_000, &["--seed", "31"]);
    // Before the new attribute: the default tracked attributes.
    ingest(&landing, &data, &[]);
    let before = plan_json(&data);
    let saved = dir.path().join("before.json");
    std::fs::write(&saved, before.to_string()).unwrap();

    // Every batch parses with sqlfluff's T-SQL dialect.
    let sql_dir = dir.path().join("sql");
    std::fs::create_dir_all(&sql_dir).unwrap();
    for (i, (_, sql)) in batches(&before).iter().enumerate() {
        std::fs::write(sql_dir.join(format!("batch_{i:03}.sql")), sql).unwrap();
    }
    let sqlfluff = python().parent().unwrap().join("sqlfluff");
    let out = std::process::Command::new(&sqlfluff)
        .args(["parse", "--dialect", "tsql", "--format", "json"])
        .arg(&sql_dir)
        .output()
        .unwrap();
    let parsed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !parsed.contains("unparsable"),
        "sqlfluff: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        parsed.chars().take(4000).collect::<String>()
    );
    let files: Value = serde_json::from_str(&parsed).unwrap();
    assert_eq!(files.as_array().unwrap().len(), batches(&before).len());

    // Sources begin sending a new attribute and the site tracks it: the views of
    // `dim_patient`, and only those, change.
    ingest_preferred_language(&landing, &data, &config);
    let out = run_ok(&[
        "synapse",
        "plan",
        "--data",
        path(&data),
        "--location",
        LOCATION,
        "--format",
        "json",
        "--diff",
        path(&saved),
    ]);
    let changes: Value = serde_json::from_str(&out).unwrap();
    let changes = changes["changes"].as_array().unwrap();
    let names: Vec<&str> = changes
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"view gold.dim_patient"), "{names:?}");
    assert!(
        names.contains(&"external table patientflow_private.dim_patient"),
        "{names:?}"
    );
    for change in changes {
        assert_eq!(change["change"], "changed", "{change}");
        assert!(
            change["name"].as_str().unwrap().ends_with("dim_patient"),
            "{change}"
        );
        assert!(
            change["sql"]
                .as_str()
                .unwrap()
                .contains("[preferred_language]"),
            "{change}"
        );
    }
}

/// The SQL text the mock server logged, first line of each batch, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn executed(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).to_string();
        text.split("Executing SQL from ")
            .skip(1)
            .filter_map(|s| {
                s.split_once(": ")
                    .map(|(_, sql)| sql.lines().next().unwrap_or_default().trim().to_string())
            })
            .collect()
    }
}

/// A self-signed certificate for `localhost`, as PEM (certificate, key).
fn certificate() -> (Vec<u8>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut cert = X509Builder::new().unwrap();
    cert.set_version(2).unwrap();
    cert.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    (
        cert.build().to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

/// Passes TDS between a client and `mssql-mock-tds`, retyping the mock's TLS handshake replies
/// from TabularResult (0x04) to PreLogin (0x12), the type SQL Server sends and tiberius
/// requires (it refuses anything else before the certificate is checked). Everything else —
/// the pre-login reply, then the raw TLS stream — passes unchanged.
async fn tds_handshake_adapter(listener: tokio::net::TcpListener, upstream: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
            continue;
        };
        tokio::spawn(async move {
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
            let mut packets = 0;
            loop {
                let mut header = [0u8; 8];
                if server_read.read_exact(&mut header[..1]).await.is_err() {
                    return;
                }
                if !matches!(header[0], 0x04 | 0x12) {
                    // Raw TLS records: the handshake is over.
                    if client_write.write_all(&header[..1]).await.is_ok() {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    }
                    return;
                }
                if server_read.read_exact(&mut header[1..]).await.is_err() {
                    return;
                }
                let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
                let mut body = vec![0u8; length.saturating_sub(8)];
                if server_read.read_exact(&mut body).await.is_err() {
                    return;
                }
                packets += 1;
                if packets > 1 {
                    header[0] = 0x12;
                }
                if client_write.write_all(&header).await.is_err()
                    || client_write.write_all(&body).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Copies the dimension tables of `data` into a root of their own.
fn mirror_dimensions(data: &Path, mirror: &Path) {
    for table in ["dim_date", "dim_department", "dim_patient"] {
        copy_dir(
            &data.join("gold").join(table),
            &mirror.join("gold").join(table),
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn apply(
    data: &Path,
    server: &str,
    envs: &[(&str, &str)],
    extra: &[&str],
) -> (bool, Value, String) {
    let mut cmd = patientflow();
    cmd.args([
        "synapse",
        "apply",
        "--data",
        path(data),
        "--location",
        LOCATION,
        "--server",
        server,
        "--database",
        "patientflow",
        "--trust-server-certificate",
        "--format",
        "json",
    ])
    .args(extra)
    .env("PATIENTFLOW_MASK_KEY", MASK_KEY)
    .env_remove("PATIENTFLOW_SYNAPSE_ACCESS_TOKEN")
    .env_remove("PATIENTFLOW_SYNAPSE_PASSWORD");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let report = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}\n{stderr}"));
    (out.status.success(), report, stderr)
}

#[test]
fn apply_sends_every_batch_in_order_over_tls_and_stops_at_a_failing_one_with_a_report() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    let config = tracking_config(dir.path());
    produce(&landing, 2_000, &["--seed", "32"]);
    ingest(&landing, &data, &["--config", path(&config)]);
    // The mock answers one TDS packet at a time and fixes the packet size at 4096 bytes, so
    // it cannot take a batch longer than a packet (a wide fact table's view is); the root it
    // is shown holds the dimensions only, whose batches each fit one packet.
    let mirror = dir.path().join("mirror");
    mirror_dimensions(&data, &mirror);
    let plan = batches(&plan_json(&mirror));
    assert!(
        plan.iter().all(|(_, sql)| sql.len() * 2 < 4_000),
        "every batch fits a packet"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cert, key) = certificate();
    let identity = || mssql_mock_tds::create_test_identity(&cert, &key).unwrap();
    let server = runtime
        .block_on(MockTdsServer::new_with_tls("127.0.0.1:0", Some(identity())))
        .unwrap();
    let (registry, connections) = (server.query_registry(), server.connection_store());
    let upstream = server.local_addr();
    runtime.spawn(server.run());
    let adapter = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = adapter.local_addr().unwrap();
    runtime.spawn(tds_handshake_adapter(adapter, upstream));
    // SQL login: every batch, in the plan's order, secrets filled in.
    let (ok, report, stderr) = apply(
        &mirror,
        &addr.to_string(),
        &[("PATIENTFLOW_SYNAPSE_PASSWORD", "not-a-real-password")],
        &["--user", "patientflow_deployer"],
    );
    assert!(ok, "{report} {stderr}");
    assert_eq!(
        report["applied"].as_array().unwrap().len(),
        plan.len(),
        "{report}"
    );
    assert!(report["failed"].is_null() && report["pending"].as_array().unwrap().is_empty());
    let first_lines: Vec<String> = plan
        .iter()
        .map(|(_, sql)| sql.lines().next().unwrap().trim().to_string())
        .collect();
    assert_eq!(log.executed(), first_lines);
    assert!(!stderr.contains("not-a-real-password") && !stderr.contains(MASK_KEY));
    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
    assert!(
        !logged.contains("$(PATIENTFLOW_MASK_KEY"),
        "placeholders are filled before sending"
    );
    let authenticated = runtime.block_on(async {
        connections
            .lock()
            .await
            .all()
            .values()
            .filter(|c| c.authenticated && c.addr.ip().is_loopback())
            .count()
    });
    assert!(authenticated >= 1);

    // Token login: the token reaches the server.
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.e2e.token";
    let (ok, report, stderr) = apply(
        &mirror,
        &addr.to_string(),
        &[("PATIENTFLOW_SYNAPSE_ACCESS_TOKEN", token)],
        &[],
    );
    assert!(ok, "{report} {stderr}");
    let tokens: Vec<Option<String>> = runtime.block_on(async {
        connections
            .lock()
            .await
            .all()
            .values()
            .map(|c| c.received_token_as_string())
            .collect()
    });
    assert!(
        tokens.iter().any(|t| t.as_deref() == Some(token)),
        "{tokens:?}"
    );

    // A batch the server fails: the run stops there and says what was applied and is pending.
    let failing = plan
        .iter()
        .position(|(name, _)| name == "view gold.dim_patient")
        .unwrap();
    runtime.block_on(async {
        registry.lock().await.register(
            plan[failing].1.clone(),
            QueryResponse::error_only(TerminalError::new(
                13807,
                16,
                "Content of directory on path 'gold/dim_patient/' cannot be listed.",
            )),
        );
    });
    let (ok, report, stderr) = apply(
        &mirror,
        &addr.to_string(),
        &[("PATIENTFLOW_SYNAPSE_ACCESS_TOKEN", token)],
        &[],
    );
    assert!(!ok);
    assert_eq!(
        report["applied"].as_array().unwrap().len(),
        failing,
        "{report}"
    );
    assert_eq!(report["failed"]["batch"], failing + 1);
    assert_eq!(report["failed"]["name"], "view gold.dim_patient");
    assert_eq!(report["failed"]["number"], 13807);
    assert!(
        report["failed"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be listed")
    );
    assert_eq!(
        report["pending"].as_array().unwrap().len(),
        plan.len() - failing - 1
    );
    assert!(stderr.contains("run `synapse apply` again"), "{stderr}");

    // After a new attribute, re-applying alters the views of `dim_patient`.
    runtime.block_on(async {
        registry
            .lock()
            .await
            .register(plan[failing].1.clone(), QueryResponse::new(vec![], vec![]))
    });
    ingest_preferred_language(&landing, &data, &config);
    std::fs::remove_dir_all(&mirror).unwrap();
    mirror_dimensions(&data, &mirror);
    let sent_before = log.executed().len();
    let (ok, report, stderr) = apply(
        &mirror,
        &addr.to_string(),
        &[("PATIENTFLOW_SYNAPSE_ACCESS_TOKEN", token)],
        &[],
    );
    assert!(ok, "{report} {stderr}");
    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
    let altered = logged
        .split("Executing SQL from ")
        .skip(sent_before + 1)
        .find(|sql| sql.contains("CREATE OR ALTER VIEW [gold].[dim_patient]"))
        .unwrap();
    assert!(altered.contains("[preferred_language]"), "{altered}");
}
