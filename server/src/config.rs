//! The config file (`patientflow.toml`): defaults for flags not given on the command line or
//! in `PATIENTFLOW_*` variables. Precedence: flag, then environment, then file, then default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The config file searched for in the working directory when `--config` is not given.
const DEFAULT_FILE: &str = "patientflow.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default)]
    pub(crate) storage: Storage,
    #[serde(default)]
    pub(crate) ingest: IngestConfig,
    #[serde(default)]
    pub(crate) gold: GoldConfig,
    #[serde(default)]
    pub(crate) serve: ServeConfig,
    #[serde(default)]
    pub(crate) maintain: MaintainConfig,
    /// librdkafka properties for Kafka sources and sinks (`bootstrap.servers` and the group
    /// come from the command line), e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub(crate) kafka: std::collections::BTreeMap<String, String>,
    /// What `patientflow run`'s jobs share (time zone, grace).
    #[serde(default)]
    pub(crate) run: crate::automation::RunConfig,
    /// The jobs `patientflow run` schedules.
    #[serde(default)]
    pub(crate) jobs: Vec<crate::automation::JobConfig>,
    /// `[alerts]`: sinks and thresholds of `patientflow run`.
    #[serde(default)]
    pub(crate) alerts: crate::automation::AlertsConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MaintainConfig {
    /// Hours a removed file is kept before VACUUM deletes it (default 168, at least 1).
    pub(crate) retention_hours: Option<f64>,
    /// Commits after which a table gets a new checkpoint (default 10).
    pub(crate) checkpoint_every: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeConfig {
    /// Address of the dashboard and REST API (default 127.0.0.1:8080).
    pub(crate) http_addr: Option<String>,
    /// Address of Arrow Flight SQL (default 127.0.0.1:50051).
    pub(crate) flight_addr: Option<String>,
    /// Semantic model file (default: the built-in model).
    pub(crate) model: Option<PathBuf>,
    /// Bottleneck occupancy threshold (default 0.85, from the model).
    pub(crate) bottleneck_threshold: Option<f64>,
    /// Seconds before a query is cancelled (default 30).
    pub(crate) query_timeout: Option<u64>,
    /// Memory pool for running queries, MiB (default 2048).
    pub(crate) memory_limit_mb: Option<usize>,
    /// Queries executing at once (default: two per core, each with at least 128 MiB of the
    /// memory pool); each gets the pool divided by this.
    pub(crate) max_executing_queries: Option<usize>,
    /// Queries of one principal executing at once (default: every slot but one, so a BI
    /// extract never holds them all).
    pub(crate) max_executing_per_principal: Option<usize>,
    /// Queries waiting for a slot at once; one more is refused with 503 (default 32 per slot).
    pub(crate) max_queued_queries: Option<usize>,
    /// Seconds a query may wait for a slot before it is refused with 503 (default 10).
    pub(crate) queue_timeout_secs: Option<u64>,
    /// Results kept in the result cache (default 256).
    pub(crate) cache_entries: Option<usize>,
    /// The key of `hash` masks (HMAC-SHA-256), a secret; `PATIENTFLOW_MASK_KEY` overrides it.
    /// The same key must be given to `synapse apply` so hashed ids match across both.
    pub(crate) mask_key: Option<String>,
    /// PEM certificate and key for Flight SQL over TLS.
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    /// Microsoft Entra ID tenant id.
    pub(crate) tenant: Option<String>,
    /// OpenID discovery document URL.
    pub(crate) openid_config: Option<String>,
    /// JWKS file for offline sites.
    pub(crate) jwks_file: Option<PathBuf>,
    /// Accepted token issuers.
    pub(crate) issuers: Option<Vec<String>>,
    /// Accepted token audiences.
    pub(crate) audiences: Option<Vec<String>>,
    /// RBAC policy folder or file.
    pub(crate) policies: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GoldConfig {
    /// Patient attributes tracked as SCD type 2 besides gender (default `["insurance_type"]`).
    pub(crate) tracked_attributes: Option<Vec<String>>,
    /// Open-stay limits by department name (contract §5.1), e.g.
    /// `[gold.open_stays.ICU] warn_after_hours = 240, stale_after_hours = 960`; a department
    /// reference file's own columns win over these.
    #[serde(default)]
    pub(crate) open_stays: std::collections::BTreeMap<String, patientflow_ingest::StayLimits>,
    /// Silver records a full build rebuilds at a time (default 1,000,000; about 1 GiB).
    pub(crate) rows_per_slice: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Storage {
    /// Table root: a local path or an `abfss://` URL.
    pub(crate) data: Option<String>,
    /// Object-store options of a remote root (object_store's Azure keys, e.g.
    /// `azure_storage_account_name`, `azure_client_id`); secrets among them are better given
    /// by the `AZURE_*` environment variables.
    #[serde(default)]
    pub(crate) options: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IngestConfig {
    /// Department reference CSV (default: the shipped reference network).
    pub(crate) departments: Option<PathBuf>,
    /// IANA time zone for timestamps without an offset (default UTC).
    pub(crate) source_timezone: Option<String>,
    /// Records per bronze batch (with --follow: the most per micro-batch).
    pub(crate) batch_records: Option<usize>,
    /// With --follow: milliseconds after its first record a micro-batch is cut.
    pub(crate) batch_interval_ms: Option<u64>,
}

impl Config {
    /// Loads `path`, or `./patientflow.toml` when it exists, or the defaults.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_FILE).exists() => PathBuf::from(DEFAULT_FILE),
            None => return Ok(Self::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| Error::Config {
            path,
            reason: e.to_string(),
        })
    }

    /// The table root from a flag/env value or the file.
    /// The table root from the flag (or `PATIENTFLOW_DATA`) or `storage.data`, with the
    /// config's object-store options.
    pub(crate) fn table_root(&self, flag: Option<&str>) -> Result<patientflow_ingest::TableRoot> {
        let root = flag
            .map(str::to_string)
            .or_else(|| self.storage.data.clone())
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "no table root: pass --data <path or URL>, set PATIENTFLOW_DATA, or set \
                     `storage.data` in patientflow.toml"
                        .into(),
                )
            })?;
        Ok(patientflow_ingest::TableRoot::parse(&root)?
            .with_storage_options(self.storage.options.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_the_file_name() {
        let dir = std::env::temp_dir().join(format!("pf-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[storage]\ndta = \"x\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("dta"), "{err}");
        std::fs::write(
            &path,
            "[storage]\ndata = \"/x\"\n[ingest]\nbatch_records = 5\n\
             [gold]\ntracked_attributes = [\"insurance_type\", \"language\"]\n\
             [gold.open_stays.ICU]\nwarn_after_hours = 48\nstale_after_hours = 96\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.storage.data.as_deref(), Some("/x"));
        let flag = dir.join("y");
        let root = c.table_root(flag.to_str()).unwrap();
        assert!(root.url().path().ends_with("/y/"), "{root:?}");
        assert_eq!(c.ingest.batch_records, Some(5));
        assert_eq!(
            c.gold.tracked_attributes,
            Some(vec!["insurance_type".to_string(), "language".to_string()])
        );
        assert_eq!(c.gold.open_stays["ICU"].stale_after_hours, 96.0);
    }
}
