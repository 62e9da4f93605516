//! Command-line definitions. Every flag that has a `PATIENTFLOW_*` variable says so in
//! `--help`; the config file fills in what neither gives.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod synapse;

pub(crate) use synapse::{
    PlanFormat, StorageCredential, SynapseApplyArgs, SynapseCommand, SynapsePlanArgs, SynapseSource,
};

/// patientflow: live and daily patient flow for a hospital network — bed occupancy,
/// admissions and discharges, length of stay, ED waits and demographics — on Delta Lake.
///
/// Typical first run:
///   patientflow demo                                   (all of the below, then serve)
///   patientflow produce --out landing --events 100000
///   patientflow ingest --from landing --data data      (bronze → silver → gold)
///   patientflow quality report --data data
///   patientflow serve --data data                      (dashboard, REST, Flight SQL)
///   patientflow maintain --data data                   (compaction, checkpoints, VACUUM)
#[derive(Debug, Parser)]
#[command(name = "patientflow", version, verbatim_doc_comment)]
pub(crate) struct Cli {
    /// Config file (TOML). Default: ./patientflow.toml when present.
    #[arg(long, global = true, env = "PATIENTFLOW_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Log level of patientflow's own logs (`off`, `error`, `warn`, `info`, `debug`, `trace`;
    /// the libraries' stay at warnings), or a full filter such as
    /// `patientflow_ingest=debug,deltalake_core=info,warn` taken as written. Logs go to stderr.
    #[arg(long, global = true, env = "PATIENTFLOW_LOG", default_value = "info")]
    pub(crate) log: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Simulate registration traffic for the reference network (7 hospitals × 7 departments),
    /// dirty data included, into a landing folder; writes a ledger of every injected defect.
    Produce(ProduceArgs),
    /// Land NDJSON files into bronze (exactly once) and refine them into silver, quarantine
    /// and data-quality counts, then refresh gold. Safe to re-run and to restart after a
    /// crash. `ingest batch` takes the daily department and EHR files.
    Ingest(IngestArgs),
    /// Data-quality reports and the rule catalogue.
    #[command(subcommand)]
    Quality(QualityCommand),
    /// The gold star schema (dimensions and facts).
    #[command(subcommand)]
    Gold(GoldCommand),
    /// Serve the tables: the dashboard and REST API over HTTP, Arrow Flight SQL for BI tools
    /// (ADBC, JDBC, Grafana), KPIs from the semantic model. New Delta commits show without a
    /// restart.
    Serve(ServeArgs),
    /// The whole thing on the embedded default, no external services: simulate events into
    /// a landing folder, ingest them through bronze, silver and gold, then serve. Re-running
    /// reuses what is there.
    Demo(DemoArgs),
    /// Table maintenance: compact small files, write a checkpoint every N commits, and VACUUM
    /// files that no version younger than the retention references. Queries running meanwhile
    /// keep working; what was done goes to ops/maintenance.
    Maintain(MaintainArgs),
    /// The platform as one long-running process: the jobs declared in the config (`[[jobs]]`:
    /// the stream, the daily department and EHR batches, gold, maintenance) on cron schedules
    /// with IANA time zones and on file arrival, with retries, timeouts, no overlap, catch-up
    /// after downtime and a run history (ops/pipeline_runs); alerts on failures, stalls,
    /// quality breaches and bottlenecks. `--serve` also serves the dashboard, REST (with
    /// /api/v1/pipelines for Azure Data Factory) and Flight SQL. `run --check` validates the
    /// jobs and prints each schedule's next fire times.
    Run(RunArgs),
    /// Mirror the lake into Azure Synapse serverless SQL: `plan` prints the T-SQL (no
    /// network), `apply` sends it.
    #[command(subcommand)]
    Synapse(SynapseCommand),
    /// Mint a development token for a policy role (signed by the local development key;
    /// trusted only by a server started with --dev-tokens). Prints the token.
    Token(TokenArgs),
}

/// How the query service listens and what it limits.
#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// Address of the dashboard and REST API (port 0 picks a free one).
    #[arg(long, env = "PATIENTFLOW_HTTP_ADDR")]
    pub(crate) http_addr: Option<String>,
    /// Address of Arrow Flight SQL (port 0 picks a free one).
    #[arg(long, env = "PATIENTFLOW_FLIGHT_ADDR")]
    pub(crate) flight_addr: Option<String>,
    /// Semantic model (YAML) instead of the built-in one.
    #[arg(long, env = "PATIENTFLOW_MODEL")]
    pub(crate) model: Option<PathBuf>,
    /// Occupancy rate from which a department is a bottleneck (default 0.85).
    #[arg(long, env = "PATIENTFLOW_BOTTLENECK_THRESHOLD")]
    pub(crate) bottleneck_threshold: Option<f64>,
    /// Seconds a query may run before it is cancelled (default 30).
    #[arg(long, env = "PATIENTFLOW_QUERY_TIMEOUT")]
    pub(crate) query_timeout: Option<u64>,
    /// Memory pool for all running queries, MiB (default 2048); each executing query may use
    /// its share, the pool divided by --max-executing-queries.
    #[arg(long, env = "PATIENTFLOW_MEMORY_LIMIT_MB")]
    pub(crate) memory_limit_mb: Option<usize>,
    /// Queries executing at once; the others wait in a queue fair between principals
    /// (default: two per core, each with at least 128 MiB of the pool). Cached answers never
    /// wait.
    #[arg(long, env = "PATIENTFLOW_MAX_EXECUTING_QUERIES")]
    pub(crate) max_executing_queries: Option<usize>,
    /// Queries waiting at once; one more gets 503 / RESOURCE_EXHAUSTED with Retry-After
    /// (default 32 per executing slot).
    #[arg(long, env = "PATIENTFLOW_MAX_QUEUED_QUERIES")]
    pub(crate) max_queued_queries: Option<usize>,
    /// Seconds a query may wait for a slot before it is refused (default 10).
    #[arg(long, env = "PATIENTFLOW_QUEUE_TIMEOUT")]
    pub(crate) queue_timeout: Option<u64>,
    /// PEM certificate for Flight SQL over TLS (with --tls-key).
    #[arg(long, env = "PATIENTFLOW_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for Flight SQL over TLS (with --tls-cert).
    #[arg(long, env = "PATIENTFLOW_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) auth: AuthArgs,
}

/// Who may query: token issuers and the RBAC policies. Every data endpoint needs a bearer
/// token; /healthz, /readyz, /metrics and the OpenAPI document stay open.
#[derive(Debug, Args)]
pub(crate) struct AuthArgs {
    /// Microsoft Entra ID tenant id: tokens are checked against its OpenID discovery document
    /// and keys, and must carry this `tid`.
    #[arg(long, env = "PATIENTFLOW_ENTRA_TENANT")]
    pub(crate) tenant: Option<String>,
    /// OpenID discovery document URL (default: the tenant's v2.0 document).
    #[arg(long, env = "PATIENTFLOW_OPENID_CONFIG")]
    pub(crate) openid_config: Option<String>,
    /// JWKS file with the signing keys, for sites without a route to Entra ID.
    #[arg(long, env = "PATIENTFLOW_JWKS_FILE")]
    pub(crate) jwks_file: Option<PathBuf>,
    /// Accepted `iss` (repeatable; default: the tenant's v1 and v2 issuers).
    #[arg(long = "issuer", env = "PATIENTFLOW_ISSUERS", value_delimiter = ',')]
    pub(crate) issuers: Vec<String>,
    /// Accepted `aud` (repeatable; default api://patientflow).
    #[arg(
        long = "audience",
        env = "PATIENTFLOW_AUDIENCES",
        value_delimiter = ','
    )]
    pub(crate) audiences: Vec<String>,
    /// Also trust development tokens (`patientflow token`), signed by the local key. For
    /// laptops, demos and tests only.
    #[arg(long, env = "PATIENTFLOW_DEV_TOKENS")]
    pub(crate) dev_tokens: bool,
    #[command(flatten)]
    pub(crate) local: PolicyArgs,
}

/// The policies and the development key, for `serve` and `token` alike.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// RBAC policy folder or file (default: the shipped example policies, rbac-policies/).
    #[arg(long, env = "PATIENTFLOW_POLICIES")]
    pub(crate) policies: Option<PathBuf>,
    /// The development signing key (created when missing; default
    /// ~/.config/patientflow/dev-signing-key.pem).
    #[arg(long, env = "PATIENTFLOW_DEV_KEY")]
    pub(crate) dev_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// Policy role to mint a token for, e.g. network_admin, hospital_manager,
    /// department_clinician, data_engineer.
    #[arg(long)]
    pub(crate) role: String,
    /// Hospital number, for roles scoped to a hospital or department.
    #[arg(long)]
    pub(crate) hospital: Option<i32>,
    /// Canonical department name (e.g. Emergency), for department roles.
    #[arg(long)]
    pub(crate) department: Option<String>,
    /// The token's subject (`oid`).
    #[arg(long, default_value = "dev-user")]
    pub(crate) oid: String,
    /// Minutes the token is valid.
    #[arg(long, default_value_t = 480)]
    pub(crate) minutes: u64,
    #[command(flatten)]
    pub(crate) local: PolicyArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Table root: a local path or URL.
    #[arg(long, env = "PATIENTFLOW_DATA")]
    pub(crate) data: Option<String>,
    #[command(flatten)]
    pub(crate) service: ServiceArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Folder for the demo's landing files and tables.
    #[arg(long, default_value = "demo")]
    pub(crate) dir: PathBuf,
    /// Events to simulate when the landing folder is empty: the history, the recent past the
    /// demo replays and the day ahead it produces live.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) events: u64,
    /// How much faster than real time the recent past (--replay-hours) is replayed into the
    /// landing folder, until the replay has caught up with the clock (after --replay-hours /
    /// (--speed - 1): 12 min 12 s by default); then the events come at the network's own pace.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) speed: f64,
    /// Hours before now that are replayed live (at --speed) rather than landed at once.
    #[arg(long, default_value_t = 12.0)]
    pub(crate) replay_hours: f64,
    /// Stream through a Kafka broker at HOST:PORT (topic --topic, which must exist) instead
    /// of the landing folder.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) kafka: Option<String>,
    /// The topic for --kafka.
    #[arg(long, default_value = "patientflow-adt")]
    pub(crate) topic: String,
    /// Prepare the tables, print what would be served, and exit.
    #[arg(long)]
    pub(crate) no_serve: bool,
    #[command(flatten)]
    pub(crate) service: ServiceArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GoldCommand {
    /// Bring the gold tables up to date with silver, processing only what silver gained since
    /// the last refresh (a no-op when nothing did). `ingest` runs this unless given --no-gold.
    Refresh(RefreshArgs),
    /// The star schema as Markdown: a Mermaid ER diagram and every gold table's columns.
    Schema,
}

/// How gold is built; shared by `ingest` and `gold refresh`.
#[derive(Debug, Default, Args)]
pub(crate) struct GoldArgs {
    /// Compute the census and `is_currently_admitted` as of this time, RFC 3339 (default: now).
    #[arg(long, env = "PATIENTFLOW_AS_OF", value_parser = instant)]
    pub(crate) as_of: Option<DateTime<Utc>>,
    /// A patient attribute tracked as SCD type 2 besides gender (repeatable; default
    /// `insurance_type`, or `gold.tracked_attributes` in the config file).
    #[arg(long = "track", value_name = "ATTRIBUTE")]
    pub(crate) tracked: Vec<String>,
    /// Silver records a full build rebuilds at a time (default 1,000,000, or
    /// `gold.rows_per_slice`): its memory is that of one slice, whatever the history.
    #[arg(long, value_name = "ROWS", env = "PATIENTFLOW_GOLD_ROWS_PER_SLICE")]
    pub(crate) rows_per_slice: Option<usize>,
}

/// The gold refresh that follows an ingest.
#[derive(Debug, Args)]
pub(crate) struct GoldStep {
    /// Stop after silver; do not refresh gold.
    #[arg(long)]
    pub(crate) no_gold: bool,
    #[command(flatten)]
    pub(crate) gold: GoldArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RefreshArgs {
    /// Table root: a local path or URL.
    #[arg(long, env = "PATIENTFLOW_DATA")]
    pub(crate) data: Option<String>,
    /// Rebuild every patient and the whole census, not only what changed.
    #[arg(long)]
    pub(crate) full: bool,
    #[command(flatten)]
    pub(crate) gold: GoldArgs,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: SummaryFormat,
}

#[derive(Debug, Args)]
pub(crate) struct MaintainArgs {
    /// Table root: a local path or URL.
    #[arg(long, env = "PATIENTFLOW_DATA")]
    pub(crate) data: Option<String>,
    /// Hours a file removed by a later version is kept before VACUUM deletes it, so that
    /// queries and time travel still find it (default 168 = 7 days; at least 1).
    #[arg(long, env = "PATIENTFLOW_RETENTION_HOURS")]
    pub(crate) retention_hours: Option<f64>,
    /// Write a checkpoint when a table has this many commits since its last, and set the
    /// tables' `delta.checkpointInterval` to it so their writers checkpoint that often
    /// (default 10, as Spark does; tables are created with 10).
    #[arg(long, env = "PATIENTFLOW_CHECKPOINT_EVERY")]
    pub(crate) checkpoint_every: Option<u64>,
    /// Change nothing: list the files VACUUM would delete.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: SummaryFormat,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Table root: a local path or URL.
    #[arg(long, env = "PATIENTFLOW_DATA")]
    pub(crate) data: Option<String>,
    /// Also serve the query service (dashboard, REST, Flight SQL) from this process; the REST
    /// API then has /api/v1/pipelines to start and follow runs.
    #[arg(long, conflicts_with = "check")]
    pub(crate) serve: bool,
    #[command(flatten)]
    pub(crate) service: ServiceArgs,
    /// Validate the config's jobs and print the next fire times of every schedule; run nothing.
    #[arg(long)]
    pub(crate) check: bool,
    /// With --check: fire times after this instant (RFC 3339; default now).
    #[arg(long, requires = "check", value_parser = instant)]
    pub(crate) after: Option<DateTime<Utc>>,
    /// With --check: how many fire times per schedule.
    #[arg(long, default_value_t = 5, requires = "check")]
    pub(crate) count: usize,
    /// With --check: preview a restart at --after of a process down since this instant (RFC
    /// 3339; the last occurrence it ran): which missed occurrences each job's catch-up policy
    /// runs and which it skips.
    #[arg(long, requires = "check", value_parser = instant)]
    pub(crate) down_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ShapeArg {
    /// One record per stay (the original producer's shape).
    Flat,
    /// ADT events: ARRIVAL, ADMIT, TRANSFER, DISCHARGE, UPDATE.
    Adt,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DefectModeArg {
    /// The defective record, then its clean resend.
    Add,
    /// The defective record instead of the clean one.
    Replace,
}

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// Landing folder to write NDJSON files into (created if missing).
    #[arg(long, required_unless_present = "to", conflicts_with = "to")]
    pub(crate) out: Option<PathBuf>,
    /// Send to a Kafka topic instead, `kafka://HOST:PORT/TOPIC` or `eventhubs://NAMESPACE/HUB`
    /// (keyed by encounter, so a stay's events stay in order within a partition).
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Send at most this many records a second (default: as fast as possible). With `--out`,
    /// each record is written to its file as it is sent, so `ingest --follow` sees it at once
    /// (without a rate, files appear whole when complete).
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub(crate) rate: Option<f64>,
    /// Records to write, every line counted (duplicates and broken records included).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) events: u64,
    /// Record shape.
    #[arg(long, value_enum, default_value = "adt")]
    pub(crate) shape: ShapeArg,
    /// Random seed: the same seed, settings and --until give the same records.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Share of records with a defect, spread evenly over the defect kinds.
    #[arg(long, default_value_t = 0.05)]
    pub(crate) dirty_rate: f64,
    /// Rate of one defect kind, e.g. `invalid_age=0.01` (repeatable); overrides its share.
    #[arg(long = "defect-rate", value_name = "RULE=RATE")]
    pub(crate) defect_rates: Vec<String>,
    /// Where the simulated history ends, RFC 3339 (default: now): its last events fall in the
    /// hour before it, whatever --events is.
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Share of clean ADT events never sent at all (lost discharges and transfers, as real
    /// feeds lose about 0.2 %); the ledger lists them by type.
    #[arg(long, default_value_t = 0.002)]
    pub(crate) lost_rate: f64,
    /// What a defect the pipeline quarantines does: `add` sends the defective record before
    /// the clean one (a rejected message and its corrected resend); `replace` sends it instead.
    #[arg(long, value_enum, default_value = "add")]
    pub(crate) defect_mode: DefectModeArg,
    /// Records per landing file.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) records_per_file: usize,
    /// Where to write the ledger (default: <out>/_producer_ledger.json, which ingest ignores;
    /// with --to, ./_producer_ledger.json).
    #[arg(long)]
    pub(crate) ledger: Option<PathBuf>,
    /// Share of the stream after which records carry the new attribute `insurance_type`.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) evolve_at: f64,
    /// Turn off the December–February flu-season surge.
    #[arg(long)]
    pub(crate) no_flu_season: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct IngestArgs {
    #[command(subcommand)]
    pub(crate) batch: Option<IngestCommand>,
    /// Where the events come from: a landing folder (read recursively; *.ndjson, *.jsonl,
    /// *.json) or one file; with --follow also `kafka://HOST:PORT/TOPIC` (a consumer group)
    /// or `eventhubs://NAMESPACE/HUB` (Azure Event Hubs' Kafka endpoint, the connection
    /// string from PATIENTFLOW_EVENTHUBS_CONNECTION_STRING).
    #[arg(long, env = "PATIENTFLOW_LANDING", required = true)]
    pub(crate) from: Option<String>,
    /// Keep going: read new files, appended lines or new messages as they arrive, in
    /// micro-batches through bronze, silver and gold, until Ctrl-C or SIGTERM (which commit
    /// the batch in hand first).
    #[arg(long)]
    pub(crate) follow: bool,
    /// Kafka consumer group (default `patientflow`).
    #[arg(long, env = "PATIENTFLOW_KAFKA_GROUP")]
    pub(crate) group: Option<String>,
    /// With --follow: cut a micro-batch this many milliseconds after its first record, or as
    /// soon as the one before it is committed if that takes longer (default 500).
    #[arg(long, env = "PATIENTFLOW_BATCH_INTERVAL_MS")]
    pub(crate) batch_interval_ms: Option<u64>,
    /// With --follow: serve Prometheus `/metrics` (lag, batches, records, freshness) on this
    /// address, e.g. 127.0.0.1:9464.
    #[arg(long, env = "PATIENTFLOW_METRICS_ADDR")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// Table root: a local path or URL.
    #[arg(long, env = "PATIENTFLOW_DATA")]
    pub(crate) data: Option<String>,
    /// Department reference CSV to normalise department names with, instead of the shipped
    /// reference network and the department batches ingested so far.
    #[arg(long, env = "PATIENTFLOW_DEPARTMENTS")]
    pub(crate) departments: Option<PathBuf>,
    /// IANA time zone of timestamps without an offset (default UTC).
    #[arg(long, env = "PATIENTFLOW_SOURCE_TIMEZONE")]
    pub(crate) source_timezone: Option<String>,
    /// Records per bronze batch (one Delta commit per table per batch).
    #[arg(long, env = "PATIENTFLOW_BATCH_RECORDS")]
    pub(crate) batch_records: Option<usize>,
    #[command(flatten)]
    pub(crate) then: GoldStep,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: SummaryFormat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum IngestCommand {
    /// Land daily batch files — department reference data and EHR patient extracts — through
    /// bronze and silver (exactly once per file content), then refresh gold.
    Batch(BatchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// Table root: a local path or URL.
    #[arg(long, env = "PATIENTFLOW_DATA")]
    pub(crate) data: Option<String>,
    /// Department reference CSV: `hospital_id,hospital_name,department,bed_capacity,
    /// staff_count,effective_from[,aliases]` (repeatable).
    #[arg(long)]
    pub(crate) departments: Vec<PathBuf>,
    /// EHR patient extract, CSV or Parquet: `patient_id,gender,age[,updated_at]` and any
    /// further attributes (repeatable).
    #[arg(long)]
    pub(crate) ehr: Vec<PathBuf>,
    /// IANA time zone of timestamps without an offset (default UTC).
    #[arg(long, env = "PATIENTFLOW_SOURCE_TIMEZONE")]
    pub(crate) source_timezone: Option<String>,
    #[command(flatten)]
    pub(crate) then: GoldStep,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: SummaryFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SummaryFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QualityCommand {
    /// The latest run's counts and the totals over all runs.
    Report(ReportArgs),
    /// The cleaning rules (as a Markdown table), in evaluation order.
    Rules,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ReportFormat {
    Json,
    Markdown,
    Html,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Table root: a local path or URL.
    #[arg(long, env = "PATIENTFLOW_DATA")]
    pub(crate) data: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub(crate) format: ReportFormat,
}

/// Parses an instant given on the command line (RFC 3339).
fn instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; use RFC 3339, e.g. 2027-03-13T00:00:00-06:00"))
}
