//! Synapse serverless SQL: the ordered T-SQL batches that mirror the lake in a serverless
//! database — a credential and a data source at the table root, one view per gold table, the
//! semantic model's KPI views, and per policy role views limited to its hospitals and
//! departments with its column masks, granted to the role's Entra ID groups.
//!
//! Pure: the inputs are the Delta schemas and protocols, the policies and the model; nothing
//! here touches a network. Secrets never enter a plan: the SAS token and the mask key appear as
//! placeholders that `synapse apply` fills in just before it sends a batch.
//!
//! ```text
//!  Delta schemas ─┐
//!  policies ──────┼─▶ plan ─▶ [Batch] ─▶ to_sql / JSON / diff      (apply: server crate)
//!  model ─────────┘
//! ```
//!
//! Every batch is one call (no `GO`); `CREATE VIEW` and `CREATE SCHEMA` stand alone in theirs
//! (a schema through `EXEC` behind an existence guard), so re-running a plan is idempotent.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::SchemaRef;
use patientflow_semantic::Model;
use serde::{Deserialize, Serialize};

use crate::rbac::{MaskKey, Policies};

mod kpi;
mod lake;
mod roles;
mod types;

pub use types::{UTF8_COLLATION, VARCHAR_BYTES, sql_type};

/// Where `synapse apply` puts the SAS token of a `Sas` credential.
pub const SAS_PLACEHOLDER: &str = "$(PATIENTFLOW_SYNAPSE_SAS_TOKEN)";
/// Where `synapse apply` puts the inner padded mask key (hex).
pub const MASK_INNER_PLACEHOLDER: &str = "$(PATIENTFLOW_MASK_KEY_INNER)";
/// Where `synapse apply` puts the outer padded mask key (hex).
pub const MASK_OUTER_PLACEHOLDER: &str = "$(PATIENTFLOW_MASK_KEY_OUTER)";

/// Schemas patientflow owns in the database; stale views are dropped from these only.
pub const GOLD_SCHEMA: &str = "gold";
/// The KPI views' schema.
pub const KPI_SCHEMA: &str = "kpi";
/// The private schema of the external tables and the mask key; granted to nobody.
pub const PRIVATE_SCHEMA: &str = "patientflow_private";

/// A Delta table of the root, as its log describes it.
#[derive(Debug, Clone)]
pub struct LakeTable {
    /// Path under the root, e.g. `gold/fact_admission`.
    pub name: String,
    /// Columns, in the file's exact case.
    pub schema: SchemaRef,
    /// The table's protocol.
    pub protocol: Protocol,
}

/// A Delta protocol: what a reader must support.
#[derive(Debug, Clone, Default)]
pub struct Protocol {
    /// Minimum reader version.
    pub min_reader_version: i32,
    /// Minimum writer version.
    pub min_writer_version: i32,
    /// Reader features (reader version 3).
    pub reader_features: Vec<String>,
    /// Writer features (writer version 7).
    pub writer_features: Vec<String>,
}

/// How serverless authenticates to the storage account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The workspace's managed identity (grant it Storage Blob Data Reader on the container).
    #[default]
    ManagedIdentity,
    /// A SAS token (read and list), from `PATIENTFLOW_SYNAPSE_SAS_TOKEN` at apply time.
    Sas,
}

/// Where the mirrored objects point.
#[derive(Debug, Clone)]
pub struct Target {
    /// The table root as an HTTPS URL:
    /// `https://ACCOUNT.dfs.core.windows.net/CONTAINER/PATH`.
    pub location: String,
    /// How serverless reaches it.
    pub credential: Credential,
}

/// One T-SQL batch, sent in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// What it creates, e.g. `view gold.fact_admission`.
    pub name: String,
    /// The batch's text.
    pub sql: String,
}

/// The ordered batches that mirror a root, with what the plan could not mirror.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// What was left out, and why.
    pub notes: Vec<String>,
    /// The batches, in the order they must run.
    pub batches: Vec<Batch>,
}

/// A batch that differs between two plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `added`, `changed` or `removed`.
    pub change: &'static str,
    /// The batch's name.
    pub name: String,
    /// Its text in the new plan (the old one for a removed batch).
    pub sql: String,
}

/// Why a root cannot be mirrored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// The plan that mirrors `tables` (every table of the root; gold is mirrored), the model's KPI
/// views and the policies' roles into a serverless database.
pub fn plan(
    tables: &[LakeTable],
    model: &Model,
    policies: &Policies,
    target: &Target,
) -> Result<Plan, PlanError> {
    let gold: Vec<&LakeTable> = tables
        .iter()
        .filter(|t| t.name.starts_with("gold/"))
        .collect();
    if gold.is_empty() {
        return Err(PlanError(
            "the root has no gold tables yet: run `patientflow gold refresh` first".into(),
        ));
    }
    let lake = lake::Lake::new(&gold)?;
    let mut plan = Plan::default();
    plan.batches.extend(lake.setup(target));
    let roles = roles::Roles::new(policies, &lake, &mut plan.notes);
    let mut schemas: Vec<String> = [PRIVATE_SCHEMA, GOLD_SCHEMA, KPI_SCHEMA]
        .map(String::from)
        .to_vec();
    schemas.extend(roles.schemas());
    plan.batches
        .extend(schemas.iter().map(|s| lake::create_schema(s)));
    plan.batches.extend(lake.external_tables());
    if roles.masks_hashed() {
        plan.batches.push(lake::mask_key_view());
    }
    plan.batches.extend(lake.gold_views());
    let kpis = kpi::Kpis::new(model, &lake);
    plan.batches
        .extend(kpis.views(KPI_SCHEMA, GOLD_SCHEMA, &mut plan.notes));
    plan.batches.extend(roles.views(&kpis, &mut plan.notes));
    plan.batches.extend(roles.grants());
    let kept: Vec<(String, String)> = plan
        .batches
        .iter()
        .filter_map(|b| b.name.strip_prefix("view "))
        .filter_map(|v| v.split_once('.'))
        .map(|(s, v)| (s.to_string(), v.to_string()))
        .collect();
    plan.batches.push(lake::drop_stale_views(&schemas, &kept));
    Ok(plan)
}

impl Plan {
    /// The plan as one T-SQL script for reading: each batch after a comment naming it. (Apply
    /// sends the batches one by one; this text is for people and linters.)
    pub fn to_sql(&self) -> String {
        let mut out = String::new();
        for note in &self.notes {
            out.push_str(&format!("-- note: {note}\n"));
        }
        for (i, batch) in self.batches.iter().enumerate() {
            out.push_str(&format!(
                "\n-- batch {}: {}\n{}\n",
                i + 1,
                batch.name,
                batch.sql
            ));
        }
        out
    }

    /// What differs from `before` (an earlier plan): batches added, changed and removed.
    pub fn diff(&self, before: &Plan) -> Vec<Change> {
        let old: BTreeMap<&str, &Batch> = before
            .batches
            .iter()
            .map(|b| (b.name.as_str(), b))
            .collect();
        let new: BTreeMap<&str, &Batch> =
            self.batches.iter().map(|b| (b.name.as_str(), b)).collect();
        let mut changes: Vec<Change> = self
            .batches
            .iter()
            .filter_map(|b| {
                let change = match old.get(b.name.as_str()) {
                    None => "added",
                    Some(o) if o.sql != b.sql => "changed",
                    Some(_) => return None,
                };
                Some(Change {
                    change,
                    name: b.name.clone(),
                    sql: b.sql.clone(),
                })
            })
            .collect();
        changes.extend(
            before
                .batches
                .iter()
                .filter(|b| !new.contains_key(b.name.as_str()))
                .map(|b| Change {
                    change: "removed",
                    name: b.name.clone(),
                    sql: b.sql.clone(),
                }),
        );
        changes
    }
}

/// Fills a batch's placeholders with the secrets (for `synapse apply`, just before sending).
pub fn with_secrets(sql: &str, sas: Option<&str>, mask_key: Option<&MaskKey>) -> String {
    let mut sql = sql.to_string();
    if let Some(sas) = sas {
        sql = sql.replace(
            SAS_PLACEHOLDER,
            &sas.trim_start_matches('?').replace('\'', "''"),
        );
    }
    if let Some(key) = mask_key {
        let (inner, outer) = key.pads();
        let hex = |b: [u8; 64]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
        sql = sql
            .replace(MASK_INNER_PLACEHOLDER, &hex(inner))
            .replace(MASK_OUTER_PLACEHOLDER, &hex(outer));
    }
    sql
}

/// `name` as a bracketed T-SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `text` as a T-SQL Unicode string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}
