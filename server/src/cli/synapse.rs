//! `patientflow synapse`: the flags of `plan` and `apply`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::SummaryFormat;

#[derive(Debug, Subcommand)]
pub(crate) enum SynapseCommand {
    /// Print the ordered T-SQL batches that mirror the root in Synapse serverless SQL: a
    /// credential and data source at the root, a view per gold table, the KPI views, and per
    /// policy role views limited to its scope with its masks, granted to its Entra ID groups.
    /// Reads the Delta logs, the policies and the model; touches no database.
    Plan(SynapsePlanArgs),
    /// Send the plan to a serverless SQL endpoint, one batch per call over TLS, stopping at the
    /// first failing batch; reports what was applied, what failed and what is pending.
    /// Idempotent: run it again after a schema change. Secrets come from the environment:
    /// PATIENTFLOW_SYNAPSE_PASSWORD (SQL login) or PATIENTFLOW_SYNAPSE_ACCESS_TOKEN (Entra ID,
    /// audience https://database.windows.net/.default), PATIENTFLOW_MASK_KEY, and
    /// PATIENTFLOW_SYNAPSE_SAS_TOKEN with `--credential sas`.
    Apply(SynapseApplyArgs),
}

/// What the plan mirrors, and where the database finds it.
#[derive(Debug, Args)]
pub(crate) struct SynapseSource {
    /// Table root: abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH, az://CONTAINER/PATH or
    /// a local copy (then give --location).
    #[arg(long, env = "PATIENTFLOW_DATA")]
    pub(crate) data: Option<String>,
    /// The root as serverless reaches it, https://ACCOUNT.dfs.core.windows.net/CONTAINER/PATH
    /// (default: derived from an ADLS --data).
    #[arg(long, env = "PATIENTFLOW_SYNAPSE_LOCATION")]
    pub(crate) location: Option<String>,
    /// How serverless authenticates to storage: the workspace's managed identity, or a SAS
    /// token from PATIENTFLOW_SYNAPSE_SAS_TOKEN at apply time.
    #[arg(long, value_enum, default_value_t = StorageCredential::ManagedIdentity)]
    pub(crate) credential: StorageCredential,
    /// Semantic model (YAML) instead of the built-in one.
    #[arg(long, env = "PATIENTFLOW_MODEL")]
    pub(crate) model: Option<PathBuf>,
    /// RBAC policy folder or file (default: the shipped example policies, rbac-policies/).
    #[arg(long, env = "PATIENTFLOW_POLICIES")]
    pub(crate) policies: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum StorageCredential {
    ManagedIdentity,
    Sas,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum PlanFormat {
    Sql,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct SynapsePlanArgs {
    #[command(flatten)]
    pub(crate) source: SynapseSource,
    /// Output: the batches as a T-SQL script, or JSON (keep it for a later --diff).
    #[arg(long, value_enum, default_value_t = PlanFormat::Sql)]
    pub(crate) format: PlanFormat,
    /// Show only what differs from an earlier plan saved with --format json.
    #[arg(long)]
    pub(crate) diff: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SynapseApplyArgs {
    #[command(flatten)]
    pub(crate) source: SynapseSource,
    /// The serverless SQL endpoint, HOST[:PORT], e.g.
    /// myworkspace-ondemand.sql.azuresynapse.net (port 1433 by default).
    #[arg(long, env = "PATIENTFLOW_SYNAPSE_SERVER")]
    pub(crate) server: String,
    /// The database the objects go in (create it once, outside master).
    #[arg(
        long,
        env = "PATIENTFLOW_SYNAPSE_DATABASE",
        default_value = "patientflow"
    )]
    pub(crate) database: String,
    /// SQL login; its password from PATIENTFLOW_SYNAPSE_PASSWORD. Without it, the Entra ID
    /// access token in PATIENTFLOW_SYNAPSE_ACCESS_TOKEN signs in.
    #[arg(long, env = "PATIENTFLOW_SYNAPSE_USER")]
    pub(crate) user: Option<String>,
    /// Accept the server's certificate without checking it (test servers only; TLS stays on).
    #[arg(long)]
    pub(crate) trust_server_certificate: bool,
    /// Output of the report.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub(crate) format: SummaryFormat,
}
