//! `patientflow synapse plan | apply`: mirror the root in Azure Synapse serverless SQL. The
//! T-SQL comes from `patientflow_sql::synapse` (pure); this module reads the Delta logs and,
//! for `apply`, talks to the database.

use patientflow_ingest::TableRoot;
use patientflow_ingest::tables::GOLD_TABLES;
use patientflow_sql::synapse::{self, Credential, LakeTable, Plan, Protocol, Target};

use crate::cli::{PlanFormat, StorageCredential, SynapsePlanArgs, SynapseSource};
use crate::commands::serve::{model_from, policies};
use crate::config::Config;
use crate::error::{Error, Result};

mod apply;

pub(crate) use apply::apply;

pub(crate) async fn plan(args: SynapsePlanArgs, config: &Config) -> Result<()> {
    let plan = build(&args.source, config).await?;
    if let Some(path) = &args.diff {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidArgument(format!("--diff {}: cannot read it: {e}", path.display()))
        })?;
        let before: Plan = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidArgument(format!(
                "--diff {}: not a plan saved with `synapse plan --format json` ({e})",
                path.display()
            ))
        })?;
        let changes = plan.diff(&before);
        match args.format {
            PlanFormat::Json => println!("{}", serde_json::json!({ "changes": changes })),
            PlanFormat::Sql if changes.is_empty() => println!("-- no changes"),
            PlanFormat::Sql => {
                for c in changes {
                    println!("\n-- {}: {}\n{}", c.change, c.name, c.sql);
                }
            }
        }
        return Ok(());
    }
    match args.format {
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&plan).map_err(|e| Error::Synapse(e.to_string()))?
        ),
        PlanFormat::Sql => print!("{}", plan.to_sql()),
    }
    Ok(())
}

/// The plan for the root, model and policies the flags and config name.
pub(crate) async fn build(source: &SynapseSource, config: &Config) -> Result<Plan> {
    let root = config.table_root(source.data.as_deref())?;
    let location = match &source.location {
        Some(l) => l.clone(),
        None => https_location(&root)?,
    };
    let model = model_from(source.model.as_deref(), None, config)?;
    let policies = policies(
        source
            .policies
            .as_deref()
            .or(config.serve.policies.as_deref()),
    )?;
    let tables = lake_tables(&root).await?;
    let target = Target {
        location,
        credential: match source.credential {
            StorageCredential::ManagedIdentity => Credential::ManagedIdentity,
            StorageCredential::Sas => Credential::Sas,
        },
    };
    synapse::plan(&tables, &model, &policies, &target)
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Every gold table that exists under the root, with its schema and protocol.
async fn lake_tables(root: &TableRoot) -> Result<Vec<LakeTable>> {
    let mut tables = Vec::new();
    for name in GOLD_TABLES {
        let table = root.open(name).await?;
        if table.version().is_none() {
            continue;
        }
        let state = table
            .snapshot()
            .map_err(|e| Error::Synapse(format!("{name}: {e}")))?;
        let protocol = state.protocol();
        tables.push(LakeTable {
            name: name.to_string(),
            schema: state.snapshot().arrow_schema(),
            protocol: Protocol {
                min_reader_version: protocol.min_reader_version(),
                min_writer_version: protocol.min_writer_version(),
                reader_features: names(protocol.reader_features()),
                writer_features: names(protocol.writer_features()),
            },
        });
    }
    Ok(tables)
}

fn names<T: ToString>(features: Option<&[T]>) -> Vec<String> {
    features
        .map(|f| f.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// `https://ACCOUNT.dfs.core.windows.net/CONTAINER/PATH` for an ADLS root.
fn https_location(root: &TableRoot) -> Result<String> {
    let url = root.url();
    let path = url.path().trim_matches('/');
    let account_from_options = || {
        root.storage_options()
            .iter()
            .find(|(k, _)| {
                matches!(
                    k.to_ascii_lowercase().as_str(),
                    "azure_storage_account_name" | "account_name"
                )
            })
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("AZURE_STORAGE_ACCOUNT_NAME").ok())
    };
    let join = |account: &str, container: &str, path: &str| {
        let path = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        format!("https://{account}.dfs.core.windows.net/{container}{path}")
    };
    match url.scheme() {
        "abfss" | "abfs" => {
            let container = url.username();
            let account = url
                .host_str()
                .and_then(|h| h.split('.').next())
                .unwrap_or_default();
            Ok(join(account, container, path))
        }
        "az" | "azure" => {
            let container = url.host_str().unwrap_or_default();
            let account = account_from_options().ok_or_else(|| {
                Error::InvalidArgument(
                    "the storage account of an az:// root is unknown: set AZURE_STORAGE_ACCOUNT_NAME or pass --location https://ACCOUNT.dfs.core.windows.net/CONTAINER/PATH".into(),
                )
            })?;
            Ok(join(&account, container, path))
        }
        _ => Err(Error::InvalidArgument(format!(
            "the root {url} is not on ADLS Gen2, so Synapse cannot read it where it is: pass --location https://ACCOUNT.dfs.core.windows.net/CONTAINER/PATH for the copy Synapse reads"
        ))),
    }
}
