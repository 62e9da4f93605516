//! Secured views: the catalog a principal's queries are planned against. Every table it may
//! reach is replaced by a view — scan, row filter, masks — built as a logical plan, so SQL,
//! semantic queries, prepared statements, views, subqueries and metadata calls all see only
//! what the principal's grants let through. Nothing rewrites SQL text.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr_fn::in_subquery;
use datafusion::logical_expr::utils::disjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, cast, lit};
use patientflow_semantic::{CATALOG, KPI_SCHEMA};

use super::access::{Access, Scope, TableRule};
use super::policy::Mask;
use super::tables::{RowScope, row_scope};

/// A table the principal is not granted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccessDenied(pub String);

fn denied(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(AccessDenied(message)))
}

/// A catalog as `access` may see it. Over the Delta tables (`rows`) every table becomes a
/// secured view; over the full `patientflow` catalog (`views only`) the KPI views are
/// gated by grant and everything else is passed through (it is secured underneath).
#[derive(Debug)]
pub(crate) struct SecuredCatalog {
    base: Arc<dyn CatalogProvider>,
    access: Arc<Access>,
    /// The keyed `hash` mask.
    mask: Arc<ScalarUDF>,
    views_only: bool,
}

impl SecuredCatalog {
    /// The Delta tables of `base`, secured.
    pub(crate) fn rows(
        base: Arc<dyn CatalogProvider>,
        access: Arc<Access>,
        mask: Arc<ScalarUDF>,
    ) -> Self {
        Self {
            base,
            access,
            mask,
            views_only: false,
        }
    }

    /// `base` with its KPI views gated by grant.
    pub(crate) fn views_only(
        base: Arc<dyn CatalogProvider>,
        access: Arc<Access>,
        mask: Arc<ScalarUDF>,
    ) -> Self {
        Self {
            base,
            access,
            mask,
            views_only: true,
        }
    }
}

impl CatalogProvider for SecuredCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.base
            .schema_names()
            .into_iter()
            .filter(|s| self.access.reaches_schema(s))
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let schema = self.base.schema(name)?;
        if self.views_only && name != KPI_SCHEMA {
            return Some(schema);
        }
        Some(Arc::new(SecuredSchema {
            name: name.to_string(),
            base: schema,
            catalog: Arc::clone(&self.base),
            access: Arc::clone(&self.access),
            mask: Arc::clone(&self.mask),
        }))
    }
}

#[derive(Debug)]
struct SecuredSchema {
    name: String,
    base: Arc<dyn SchemaProvider>,
    /// The catalog `base` belongs to (patients are scoped through admissions).
    catalog: Arc<dyn CatalogProvider>,
    access: Arc<Access>,
    mask: Arc<ScalarUDF>,
}

#[async_trait]
impl SchemaProvider for SecuredSchema {
    fn table_names(&self) -> Vec<String> {
        self.base
            .table_names()
            .into_iter()
            .filter(|t| self.access.rule(&self.name, t).is_some())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !self.base.table_exist(name) {
            return Ok(None);
        }
        let Some(rule) = self.access.rule(&self.name, name) else {
            return Err(denied(format!(
                "permission denied: your roles do not grant `{}.{name}`; ask for a role that does",
                self.name
            )));
        };
        let Some(provider) = self.base.table(name).await? else {
            return Ok(None);
        };
        if self.name == KPI_SCHEMA {
            // KPI views read the secured tables underneath.
            return Ok(Some(provider));
        }
        let plan = self.secured_plan(name, provider, &rule).await?;
        Ok(Some(Arc::new(ViewTable::new(plan, None))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.base.table_exist(name)
    }
}

impl SecuredSchema {
    /// Scan → row filter → masks.
    async fn secured_plan(
        &self,
        table: &str,
        provider: Arc<dyn TableProvider>,
        rule: &TableRule,
    ) -> Result<LogicalPlan> {
        let schema = provider.schema();
        let has = |c: &str| schema.field_with_name(c).is_ok();
        let mut plan = scan(&self.name, table, provider)?;
        if !rule.network() {
            let filter = match row_scope(&self.name, table) {
                RowScope::Reference => None,
                RowScope::Columns if has("hospital_id") && has("department") => {
                    Some(scope_filter(&rule.scopes))
                }
                RowScope::ViaAdmissions if has("patient_sk") => Some(in_subquery(
                    column("patient_sk"),
                    Arc::new(self.admitted_patients(&rule.scopes).await?),
                )),
                _ => {
                    return Err(denied(format!(
                        "permission denied: `{}.{table}` cannot be limited to your hospitals and departments, so only network-wide roles read it",
                        self.name
                    )));
                }
            };
            if let Some(filter) = filter {
                plan = plan.filter(filter)?;
            }
        }
        if rule.masks.keys().any(|c| has(c)) {
            let columns = schema
                .fields()
                .iter()
                .map(|f| masked(f.name(), f.data_type(), &rule.masks, &self.mask))
                .collect::<Result<Vec<_>>>()?;
            plan = plan.project(columns)?;
        }
        plan.build()
    }

    /// `patient_sk` of the admissions in `scopes` (no rows when there are no admissions yet).
    async fn admitted_patients(&self, scopes: &[Scope]) -> Result<LogicalPlan> {
        let gold = self.catalog.schema("gold");
        let admissions = match gold {
            Some(gold) => gold.table("fact_admission").await?,
            None => None,
        };
        match admissions {
            Some(provider) => scan("gold", "fact_admission", provider)?
                .filter(scope_filter(scopes))?
                .project([column("patient_sk")])?
                .build(),
            None => LogicalPlanBuilder::empty(false)
                .project([lit(ScalarValue::Int64(None)).alias("patient_sk")])?
                .build(),
        }
    }
}

fn scan(schema: &str, table: &str, provider: Arc<dyn TableProvider>) -> Result<LogicalPlanBuilder> {
    LogicalPlanBuilder::scan(
        TableReference::full(CATALOG, schema.to_string(), table.to_string()),
        provider_as_source(provider),
        None,
    )
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Rows of any of `scopes`: `hospital_id = h` for a hospital, `hospital_id = h AND
/// department IN (…)` for departments of it.
fn scope_filter(scopes: &[Scope]) -> Expr {
    // None: the whole hospital.
    let mut hospitals: BTreeMap<i32, Option<Vec<String>>> = BTreeMap::new();
    for scope in scopes {
        match scope {
            Scope::Network => return lit(true),
            Scope::Hospital(h) => {
                hospitals.insert(*h, None);
            }
            Scope::Department(h, d) => {
                if let Some(departments) = hospitals.entry(*h).or_insert_with(|| Some(Vec::new())) {
                    departments.push(d.clone());
                }
            }
        }
    }
    disjunction(hospitals.into_iter().map(|(h, departments)| {
        let hospital = column("hospital_id").eq(lit(h));
        match departments {
            None => hospital,
            Some(d) => {
                hospital.and(column("department").in_list(d.into_iter().map(lit).collect(), false))
            }
        }
    }))
    .unwrap_or_else(|| lit(false))
}

/// The column `name` as `masks` shows it.
fn masked(
    name: &str,
    data_type: &DataType,
    masks: &BTreeMap<String, Mask>,
    hash: &ScalarUDF,
) -> Result<Expr> {
    Ok(match masks.get(name) {
        None => column(name),
        Some(Mask::Hash) => hash
            .call(vec![cast(column(name), DataType::Utf8)])
            .alias(name),
        Some(Mask::Hide) => lit(ScalarValue::try_from(data_type)?).alias(name),
    })
}
