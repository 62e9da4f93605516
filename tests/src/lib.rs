//! Support for the end-to-end tests in `tests/e2e`: run the real `patientflow` binary, read
//! the Delta tables it writes, and find the Python venv that `.ci/setup` builds.
//!
//! Run them with `cargo nextest run --workspace`: that builds the binary with the tests.

// Test support: a panic with a message is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use deltalake::arrow::array::{Array, Int64Array, RecordBatch};
use deltalake::datafusion::prelude::SessionContext;
use serde_json::Value;

/// Path of the `patientflow` binary that `cargo nextest run --workspace` builds alongside
/// this test (the server package's integration test makes cargo build it).
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // <target>/<profile>/deps/e2e-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile dir");
        let bin = profile_dir.join("patientflow");
        assert!(
            bin.exists(),
            "{} is missing: run the tests with `cargo nextest run --workspace`",
            bin.display()
        );
        bin
    })
}

/// A `patientflow` command with logs kept quiet.
pub fn patientflow() -> Command {
    let mut cmd = Command::new(binary());
    cmd.env(
        "PATIENTFLOW_LOG",
        "warn,buoyant_kernel=off,deltalake_core=error",
    )
    .env_remove("PATIENTFLOW_DATA");
    cmd
}

/// Runs `patientflow args…`, asserting success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = patientflow()
        .args(args)
        .output()
        .expect("spawn patientflow");
    assert_success(&out, args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics with both streams when `out` is not a success.
pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "patientflow {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Produces `events` records into `landing`; returns the ledger.
pub fn produce(landing: &Path, events: u64, extra: &[&str]) -> Value {
    let n = events.to_string();
    let mut args = vec!["produce", "--out", path(landing), "--events", &n];
    args.extend_from_slice(extra);
    run_ok(&args);
    read_json(&landing.join("_producer_ledger.json"))
}

/// Ingests `landing` into `data`; returns the JSON summary.
pub fn ingest(landing: &Path, data: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "ingest",
        "--from",
        path(landing),
        "--data",
        path(data),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    parse_json(&run_ok(&args))
}

/// Lands a department reference file into `data` as the daily batch does, without gold.
pub fn ingest_departments(data: &Path, csv: &Path) {
    run_ok(&[
        "ingest",
        "batch",
        "--data",
        path(data),
        "--departments",
        path(csv),
        "--no-gold",
    ]);
}

/// The JSON quality report of `data`.
pub fn quality_report(data: &Path) -> Value {
    parse_json(&run_ok(&[
        "quality",
        "report",
        "--data",
        path(data),
        "--format",
        "json",
    ]))
}

/// A path as UTF-8 text (test paths always are).
pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Parses JSON text, panicking with the text on failure.
pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    parse_json(&std::fs::read_to_string(path).expect("read JSON file"))
}

/// Runs `sql` over the Delta tables under `data`, each registered under its name in
/// `tables` (`(alias, table)`); returns the result batches.
pub fn query(data: &Path, tables: &[(&str, &str)], sql: &str) -> Vec<RecordBatch> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ctx = SessionContext::new();
        for (alias, name) in tables {
            let url = deltalake::ensure_table_uri(path(&data.join(name))).expect("table url");
            let table = deltalake::open_table(url).await.expect("open table");
            table
                .update_datafusion_session(&ctx.state())
                .expect("session");
            ctx.register_table(*alias, table.table_provider().await.expect("provider"))
                .expect("register");
        }
        ctx.sql(sql)
            .await
            .unwrap_or_else(|e| panic!("plan {sql}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("run {sql}: {e}"))
    })
}

/// The rows of a query as text lines, `|`-separated (NULL as `NULL`), for exact comparisons.
pub fn rows(data: &Path, tables: &[(&str, &str)], sql: &str) -> Vec<String> {
    let batches = query(data, tables, sql);
    let options = deltalake::arrow::util::display::FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in &batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| {
                deltalake::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                    .expect("formatter")
            })
            .collect();
        for i in 0..b.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(i).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out
}

/// Runs `sql` over the Delta table `name` under `data`, registered as `t`; returns the first
/// column of the first row as an integer (for counts and sums).
pub fn scalar(data: &Path, name: &str, sql: &str) -> i64 {
    let batches = query(data, &[("t", name)], sql);
    let col = batches[0].column(0);
    let ints = deltalake::arrow::compute::cast(col, &deltalake::arrow::datatypes::DataType::Int64)
        .expect("cast to i64");
    let ints = ints.as_any().downcast_ref::<Int64Array>().expect("i64");
    if ints.is_null(0) { 0 } else { ints.value(0) }
}

/// The Python interpreter of the test venv (`PATIENTFLOW_PYTHON`, else the one `.ci/setup`
/// builds); panics with the fix when it is missing.
pub fn python() -> PathBuf {
    let candidate = std::env::var_os("PATIENTFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/patientflow/venv/bin/python")
        });
    assert!(
        candidate.exists(),
        "no test venv at {}; run `.ci/setup` (or set PATIENTFLOW_PYTHON)",
        candidate.display()
    );
    candidate
}

/// Asserts that a quality report's totals equal a producer ledger, rule by rule (rules the
/// producer cannot inject must count zero).
pub fn assert_report_matches_ledger(report: &Value, ledger: &Value, context: &str) {
    for key in ["records_in", "silver_rows", "quarantined", "duplicates"] {
        assert_eq!(report[key], ledger[key], "{key} ({context})");
    }
    let rules = report["rules"].as_object().expect("rules object");
    for (rule, count) in rules {
        let expected = ledger["rules"].get(rule).cloned().unwrap_or(Value::from(0));
        assert_eq!(count, &expected, "rule {rule} ({context})");
    }
    let ledger_rules = ledger["rules"].as_object().expect("ledger rules");
    for rule in ledger_rules.keys() {
        assert!(
            rules.contains_key(rule),
            "report lacks rule {rule} ({context})"
        );
    }
}

/// A `patientflow serve` on free loopback ports, trusting development tokens signed by a key
/// beside the table root; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: std::process::Child,
    /// `host:port` of the dashboard and REST API.
    pub http: String,
    /// `host:port` of Flight SQL.
    pub flight: String,
    /// The development signing key.
    pub key: PathBuf,
    /// A `data_engineer` token: every table (patient ids hashed).
    pub token: String,
}

impl Server {
    /// Starts `patientflow serve --data <data> --dev-tokens` plus `extra` flags and waits
    /// until it has bound both ports (it prints them on stdout).
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let mut command = patientflow();
        command.args(["serve", "--data", path(data)]).args(extra);
        Self::spawn(data, command)
    }

    /// Starts `patientflow run --serve --config <config> --data <data>` with `envs`, trusting
    /// development tokens, and waits until it serves.
    pub fn start_run(config: &Path, data: &Path, envs: &[(&str, &str)]) -> Server {
        let mut command = patientflow();
        command
            .args([
                "run",
                "--serve",
                "--config",
                path(config),
                "--data",
                path(data),
            ])
            .envs(envs.iter().copied());
        Self::spawn(data, command)
    }

    /// Starts `patientflow <args>` with `envs` (a server over a remote root: `serve --data
    /// az://…`, `run --serve …`), its development key in `key_dir`, and waits until it serves.
    pub fn start_with(args: &[&str], key_dir: &Path, envs: &[(&str, String)]) -> Server {
        let mut command = patientflow();
        command
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
        Self::spawn_keyed(key_dir.join("dev-signing-key.pem"), command)
    }

    /// Starts `command` (a `patientflow serve …` the caller built, its environment and stderr
    /// included) with its development key in `key_dir`, and waits until it serves.
    pub fn start_command(command: Command, key_dir: &Path) -> Server {
        Self::spawn_keyed(key_dir.join("dev-signing-key.pem"), command)
    }

    /// Stops it with SIGTERM and waits for it to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for patientflow")
    }

    /// [`Server::start`], its log (stderr) written to `log` instead of the test's stderr.
    pub fn start_logged(data: &Path, extra: &[&str], log: &Path) -> Server {
        let mut command = patientflow();
        command.args(["serve", "--data", path(data)]).args(extra);
        let file = std::fs::File::create(log).expect("create the server log");
        command.stderr(file);
        Self::spawn(data, command)
    }

    fn spawn(data: &Path, command: Command) -> Server {
        Self::spawn_keyed(data.with_file_name("dev-signing-key.pem"), command)
    }

    /// Spawns `command` (its stderr is the test's unless the caller set it).
    fn spawn_keyed(key: PathBuf, mut command: Command) -> Server {
        use std::io::{BufRead, BufReader};
        let token = mint(&key, &["--role", "data_engineer"]);
        let mut child = command
            .args(["--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0"])
            .args(["--dev-tokens", "--dev-key", path(&key)])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start patientflow");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut http = None;
        let mut flight = None;
        while http.is_none() || flight.is_none() {
            let line = lines
                .next()
                .expect("patientflow exited before printing its addresses")
                .expect("read patientflow output");
            if let Some(rest) = line.strip_prefix("dashboard: http://") {
                // host:port, then `/` (and the demo's `#token=…`)
                http = rest.split('/').next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("Flight SQL: ") {
                // grpc://host:port, or grpc+tls://host:port
                flight = rest.split_once("://").map(|(_, addr)| addr.to_string());
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            http: http.unwrap_or_default(),
            flight: flight.unwrap_or_default(),
            key,
            token,
        }
    }

    /// Kills the process with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A development token from `patientflow token <args>` (e.g. `--role network_admin`).
    pub fn mint(&self, args: &[&str]) -> String {
        mint(&self.key, args)
    }

    /// An HTTP client that sends `token`.
    pub fn client_with(&self, token: &str) -> reqwest::blocking::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header value"),
        );
        reqwest::blocking::Client::builder()
            .default_headers(headers)
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("HTTP client")
    }

    /// An HTTP client with the `data_engineer` token.
    pub fn client(&self) -> reqwest::blocking::Client {
        self.client_with(&self.token)
    }

    /// `http://host:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP receiver on a free loopback port that answers 200 to every request and keeps what
/// was POSTed (path and JSON body), as an alert webhook would receive it. Stops with the test.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:port`.
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a receiver");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let target = request.split(' ').nth(1).unwrap_or("").to_string();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    sink.lock().unwrap().push((target, value));
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, received }
    }

    /// What was POSTed to `path` so far.
    pub fn at(&self, path: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Azurite's Blob service (npm `azurite`, installed by `.ci/setup`) on a free loopback port
/// with its well-known development account, storing under a temporary folder; stopped when
/// dropped.
#[derive(Debug)]
pub struct Azurite {
    child: std::process::Child,
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// The development account's well-known name and key (public, in Azurite's docs).
    pub const ACCOUNT: &'static str = "devstoreaccount1";
    pub const KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    /// Starts it and creates `container`.
    pub fn start(container: &str) -> Azurite {
        let dir = tempfile::tempdir().expect("azurite folder");
        let (child, endpoint) = Self::spawn(dir.path(), 0);
        let azurite = Azurite {
            child,
            endpoint,
            _dir: dir,
        };
        python_json(
            "import json, sys\nfrom azure.storage.blob import BlobServiceClient\n\
             BlobServiceClient.from_connection_string(sys.argv[1]).create_container(sys.argv[2])\n\
             print(json.dumps({}))",
            &[&azurite.connection_string(), container],
        );
        azurite
    }

    /// Runs `patientflow <args>` with the emulator's environment and waits for it.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        patientflow()
            .args(args)
            .envs(self.env())
            .output()
            .expect("run patientflow")
    }

    /// Stops the emulator as an operator would (SIGINT, so it saves its blob metadata; a
    /// SIGKILLed Azurite forgets recent containers): storage becomes unreachable.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same blobs.
    pub fn restart(&mut self) {
        self.stop();
        let port: u16 = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the endpoint's port");
        let (child, endpoint) = Self::spawn(self._dir.path(), port);
        assert_eq!(endpoint, self.endpoint);
        self.child = child;
    }

    /// Starts the emulator over the blobs in `dir` on `port` (0: a free one); returns it and
    /// its endpoint once it listens.
    fn spawn(dir: &Path, port: u16) -> (std::process::Child, String) {
        use std::io::{BufRead, BufReader};
        let tools = std::env::var_os("PATIENTFLOW_TOOLS").map_or_else(
            || {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/patientflow")
            },
            PathBuf::from,
        );
        let bin = tools.join("tools/azurite/node_modules/.bin/azurite-blob");
        assert!(bin.exists(), "{} is missing: run .ci/setup", bin.display());
        let port = port.to_string();
        let mut child = Command::new(&bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port,
                "--silent",
                "--disableTelemetry",
            ])
            .args(["--skipApiVersionCheck", "--location", path(dir)])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start azurite");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let endpoint = loop {
            let line = lines
                .next()
                .expect("azurite exited before listening")
                .expect("read azurite output");
            if let Some(i) = line.find("listens on ") {
                break line[i + "listens on ".len()..].trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        (child, endpoint)
    }

    /// The connection string of the development account at this endpoint.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={}/{};",
            Self::ACCOUNT,
            Self::KEY,
            self.endpoint,
            Self::ACCOUNT
        )
    }

    /// The environment object_store reads: the emulator, its endpoint, the account and key.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            ("AZURITE_BLOB_STORAGE_URL", self.endpoint.clone()),
            ("AZURE_STORAGE_ACCOUNT_NAME", Self::ACCOUNT.into()),
            ("AZURE_STORAGE_ACCOUNT_KEY", Self::KEY.into()),
        ]
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `seconds`.
pub fn wait_for<T>(seconds: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `patientflow token --dev-key <key> <args>`: a development token.
pub fn mint(key: &Path, args: &[&str]) -> String {
    let mut all = vec!["token", "--dev-key", path(key)];
    all.extend_from_slice(args);
    run_ok(&all).trim().to_string()
}

/// Runs a Python script in the test venv with `args`; returns its stdout parsed as JSON.
pub fn python_json(script: &str, args: &[&str]) -> Value {
    // Once the script is done, leave without interpreter teardown: deltalake 1.6 with pyarrow
    // 26 now and then aborts there ("terminate called without an active exception") after
    // everything has succeeded and the answer is printed.
    let script = format!("{script}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)\n");
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    parse_json(&String::from_utf8_lossy(&out.stdout))
}

/// A Kafka-protocol broker (nisshi, built by `.ci/setup` into `$PATIENTFLOW_TOOLS/tools/bin`)
/// on a free loopback port, its topics in memory (or SQLite, for SCRAM users); killed when
/// dropped.
#[derive(Debug)]
pub struct Broker {
    child: std::process::Child,
    /// `host:port`.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Broker {
    /// The nisshi binary; panics with the fix when it is missing.
    pub fn binary() -> PathBuf {
        let tools = std::env::var_os("PATIENTFLOW_TOOLS").map_or_else(
            || PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/patientflow"),
            PathBuf::from,
        );
        let bin = tools.join("tools/bin/nisshi");
        assert!(
            bin.exists(),
            "{} is missing: run `bash .ci/setup` (it builds the nisshi broker from crates.io)",
            bin.display()
        );
        bin
    }

    /// Starts a broker with its topics in memory; clients need not log in.
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().expect("broker dir");
        let addr = free_addr();
        let child = Self::spawn(&dir, &addr, &["--storage-engine", "memory://nisshi/"]);
        Broker { child, addr, dir }
    }

    /// Starts a broker that requires SASL SCRAM login, with one SCRAM-SHA-256 user and the
    /// topic `topic` (created first without authentication, which nisshi's admin commands
    /// need, then the broker restarts on the same SQLite store with it).
    pub fn start_scram(user: &str, password: &str, topic: &str) -> Broker {
        let dir = tempfile::tempdir().expect("broker dir");
        let addr = free_addr();
        let store = ["--storage-engine", "sqlite://nisshi.db"];
        let mut setup = Broker {
            child: Self::spawn(&dir, &addr, &store),
            addr: addr.clone(),
            dir,
        };
        setup.admin(&["user", "create", user, password, "--mechanism", "scram256"]);
        setup.admin(&["topic", "create", topic, "--partitions", "1"]);
        let _ = setup.child.kill();
        let _ = setup.child.wait();
        setup.child = Self::spawn(&setup.dir, &addr, &[store[0], store[1], "--authentication"]);
        setup
    }

    fn spawn(dir: &tempfile::TempDir, addr: &str, args: &[&str]) -> std::process::Child {
        let url = format!("tcp://{addr}");
        let child = Command::new(Self::binary())
            .args(["broker", "--kafka-listener-url", &url])
            .args(["--kafka-advertised-listener-url", &url])
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nisshi");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "broker did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child
    }

    /// Runs `nisshi <args…> --broker <this>`, asserting success.
    pub fn admin(&self, args: &[&str]) {
        let url = format!("tcp://{}", self.addr);
        let out = Command::new(Self::binary())
            .args(args)
            .args(["--broker", &url])
            .current_dir(self.dir.path())
            .output()
            .expect("run nisshi");
        assert_success(&out, args);
    }

    /// Each partition's high watermark (the offset after its last message).
    pub fn high_watermarks(&self, topic: &str, partitions: i32) -> Vec<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .expect("consumer");
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, std::time::Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .collect()
    }
}

/// A free loopback `host:port` (nisshi advertises the address it is given, so the port is
/// chosen here rather than bound as 0).
fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The latest version a Delta table's log records for application id `app_id` (read from the
/// log's JSON commits, independently of delta-rs).
pub fn logged_txn(table: &Path, app_id: &str) -> Option<i64> {
    let mut best = None;
    for entry in std::fs::read_dir(table.join("_delta_log")).ok()?.flatten() {
        if !entry.file_name().to_string_lossy().ends_with(".json") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
        {
            let Ok(action) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if action["txn"]["appId"] == app_id {
                best = best.max(action["txn"]["version"].as_i64());
            }
        }
    }
    best
}
