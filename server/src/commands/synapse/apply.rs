//! `synapse apply`: the plan's batches sent with tiberius, one `simple_query` per batch, TLS
//! on, following a routing redirect; stops at the first failing batch.

use patientflow_sql::synapse::{self, MASK_INNER_PLACEHOLDER, SAS_PLACEHOLDER};
use serde::Serialize;
use tiberius::{AuthMethod, Client, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::cli::{SummaryFormat, SynapseApplyArgs};
use crate::config::Config;
use crate::error::{Error, Result};

/// What an apply did.
#[derive(Debug, Default, Serialize)]
struct Report {
    applied: Vec<String>,
    failed: Option<Failure>,
    pending: Vec<String>,
}

/// The batch that failed, with the server's error.
#[derive(Debug, Serialize)]
struct Failure {
    /// 1-based position in the plan.
    batch: usize,
    name: String,
    /// The statement (line of the batch) the server named, or the batch's first line.
    statement: String,
    /// The server's error number (0 when the connection failed rather than the batch).
    number: u32,
    message: String,
}

pub(crate) async fn apply(args: SynapseApplyArgs, config: &Config) -> Result<()> {
    let plan = super::build(&args.source, config).await?;
    let needs = |placeholder: &str| plan.batches.iter().any(|b| b.sql.contains(placeholder));
    let sas = needs(SAS_PLACEHOLDER)
        .then(|| {
            secret(
                "PATIENTFLOW_SYNAPSE_SAS_TOKEN",
                "the SAS token (read and list) serverless reads the container with, for --credential sas",
            )
        })
        .transpose()?;
    let mask_key = match crate::commands::serve::mask_key(config) {
        None if needs(MASK_INNER_PLACEHOLDER) => {
            return Err(Error::InvalidArgument(
                "the role views hash columns with the deployment's mask key: set PATIENTFLOW_MASK_KEY (or serve.mask_key), the same key `serve` uses".into(),
            ));
        }
        key => key,
    };
    let mut client = connect(&args).await?;
    let mut report = Report::default();
    for (i, batch) in plan.batches.iter().enumerate() {
        if report.failed.is_some() {
            report.pending.push(batch.name.clone());
            continue;
        }
        let sql = synapse::with_secrets(&batch.sql, sas.as_deref(), mask_key.as_ref());
        let sent = match client.simple_query(sql).await {
            Ok(stream) => stream.into_results().await.map(|_| ()),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                tracing::info!(batch = i + 1, name = %batch.name, "applied");
                report.applied.push(batch.name.clone());
            }
            Err(e) => {
                let (number, line, message) = match &e {
                    tiberius::error::Error::Server(t) => {
                        (t.code(), t.line() as usize, t.message().to_string())
                    }
                    other => (0, 0, other.to_string()),
                };
                let statement = batch
                    .sql
                    .lines()
                    .nth(line.saturating_sub(1))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                tracing::warn!(batch = i + 1, name = %batch.name, number, %message, "batch failed; stopping");
                report.failed = Some(Failure {
                    batch: i + 1,
                    name: batch.name.clone(),
                    statement,
                    number,
                    message,
                });
            }
        }
    }
    match args.format {
        SummaryFormat::Json => println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| Error::Synapse(e.to_string()))?
        ),
        SummaryFormat::Text => print!("{}", report_text(&report)),
    }
    match report.failed {
        None => Ok(()),
        Some(f) => Err(Error::InvalidArgument(format!(
            "batch {} ({}) failed with error {}: {}; {} batch(es) applied, {} pending. Fix the cause and run `synapse apply` again: the batches are idempotent",
            f.batch,
            f.name,
            f.number,
            f.message,
            report.applied.len(),
            report.pending.len()
        ))),
    }
}

/// A secret from the environment, or what to set.
fn secret(variable: &str, what: &str) -> Result<String> {
    std::env::var(variable)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::InvalidArgument(format!("the plan needs {what}: set {variable}")))
}

/// A client signed in to `args.database`, after one routing redirect if the gateway sends one.
async fn connect(args: &SynapseApplyArgs) -> Result<Client<Compat<TcpStream>>> {
    let (host, port) = match args.server.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "--server {}: the port is not a number",
                    args.server
                ))
            })?,
        ),
        None => (args.server.clone(), 1433),
    };
    let mut config = tiberius::Config::new();
    config.host(&host);
    config.port(port);
    config.database(&args.database);
    config.application_name("patientflow");
    config.encryption(EncryptionLevel::Required);
    if args.trust_server_certificate {
        config.trust_cert();
    }
    config.authentication(match &args.user {
        Some(user) => AuthMethod::sql_server(
            user,
            secret("PATIENTFLOW_SYNAPSE_PASSWORD", "the SQL login's password")?,
        ),
        None => AuthMethod::aad_token(
            secret(
                "PATIENTFLOW_SYNAPSE_ACCESS_TOKEN",
                "an Entra ID access token for https://database.windows.net/.default (or --user with PATIENTFLOW_SYNAPSE_PASSWORD)",
            )?,
        ),
    });
    let unreachable = |addr: String, e: &dyn std::fmt::Display| {
        Error::InvalidArgument(format!(
            "cannot reach the serverless SQL endpoint {addr}: {e}; check --server and that this machine may connect (firewall rules)"
        ))
    };
    for _ in 0..2 {
        let addr = config.get_addr().to_string();
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| unreachable(addr.clone(), &e))?;
        tcp.set_nodelay(true)
            .map_err(|e| unreachable(addr.clone(), &e))?;
        match Client::connect(config.clone(), tcp.compat_write()).await {
            Ok(client) => return Ok(client),
            Err(tiberius::error::Error::Routing { host, port }) => {
                tracing::info!(%host, port, "routed by the gateway");
                config.host(&host);
                config.port(port);
            }
            Err(e) => {
                return Err(Error::InvalidArgument(format!(
                    "cannot sign in to {addr}, database {}: {e}; check the login (PATIENTFLOW_SYNAPSE_USER / PATIENTFLOW_SYNAPSE_PASSWORD or PATIENTFLOW_SYNAPSE_ACCESS_TOKEN)",
                    args.database
                )));
            }
        }
    }
    Err(Error::InvalidArgument(
        "the gateway routed the connection more than once".into(),
    ))
}

fn report_text(r: &Report) -> String {
    let mut out = format!("applied {} batch(es)\n", r.applied.len());
    if let Some(f) = &r.failed {
        out.push_str(&format!(
            "FAILED batch {} ({}): error {}: {}\n  statement: {}\n",
            f.batch, f.name, f.number, f.message, f.statement
        ));
    }
    if !r.pending.is_empty() {
        out.push_str(&format!("pending {} batch(es):\n", r.pending.len()));
        for name in &r.pending {
            out.push_str(&format!("  {name}\n"));
        }
    }
    out
}
