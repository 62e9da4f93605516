//! The policy roles in the database: a schema per role and scope, views over the private
//! external tables limited to the scope's hospitals and departments with the role's masks (a
//! `hash` mask is the keyed HMAC of the query service), the KPI views over those, and the
//! role's Entra ID groups as users granted `SELECT` on the schema.
//!
//! Serverless has no row-level security, so a scope is a schema: a role bound to departments by
//! groups gets one schema per group's department.

use std::collections::BTreeMap;

use crate::rbac::{Grant, Mask, Policies, RowScope, Scope, ScopeKind, row_scope, scope_of};

use super::kpi::Kpis;
use super::lake::{Lake, MASK_KEY_VIEW, Table};
use super::{Batch, GOLD_SCHEMA, KPI_SCHEMA, PRIVATE_SCHEMA, ident, literal};

/// One role's schema for one scope.
#[derive(Debug)]
struct RoleSchema {
    schema: String,
    grant: Grant,
    /// Entra ID group object ids granted the schema.
    groups: Vec<String>,
}

/// Every role schema of the policies.
#[derive(Debug)]
pub(super) struct Roles<'a> {
    lake: &'a Lake,
    schemas: Vec<RoleSchema>,
}

impl<'a> Roles<'a> {
    pub(super) fn new(policies: &Policies, lake: &'a Lake, notes: &mut Vec<String>) -> Self {
        let mut schemas: BTreeMap<String, RoleSchema> = BTreeMap::new();
        for (name, role) in policies.roles() {
            let mut bound: Vec<(Scope, Option<String>)> = Vec::new();
            if role.scope == ScopeKind::Network {
                bound.push((Scope::Network, None));
                bound.extend(
                    role.groups
                        .keys()
                        .map(|g| (Scope::Network, Some(g.clone()))),
                );
                if role.groups.is_empty() {
                    notes.push(format!(
                        "role `{name}` names no Entra ID group: its schema is created but granted to nobody; add the group's object id under `groups:` in its policy"
                    ));
                }
            } else {
                for (group, binding) in &role.groups {
                    if let Some(scope) = scope_of(role.scope, binding) {
                        bound.push((scope, Some(group.clone())));
                    }
                }
                if role.app_role.is_some() {
                    notes.push(format!(
                        "role `{name}`: scopes granted by app role values have no database counterpart; each scope to mirror needs an Entra ID group under `groups:`"
                    ));
                }
            }
            for (scope, group) in bound {
                let schema = schema_name(name, &scope);
                let entry = schemas.entry(schema.clone()).or_insert_with(|| RoleSchema {
                    schema,
                    grant: Grant {
                        role: name.clone(),
                        tables: role.tables.clone(),
                        scope,
                        masks: role.masks.clone(),
                    },
                    groups: Vec::new(),
                });
                entry.groups.extend(group);
            }
        }
        Self {
            lake,
            schemas: schemas.into_values().collect(),
        }
    }

    /// The role schemas' names.
    pub(super) fn schemas(&self) -> Vec<String> {
        self.schemas.iter().map(|s| s.schema.clone()).collect()
    }

    /// Whether some role hashes a column the lake has (the views then need the mask key).
    pub(super) fn masks_hashed(&self) -> bool {
        self.schemas.iter().any(|s| {
            s.grant.masks.iter().any(|(column, mask)| {
                *mask == Mask::Hash && self.lake.tables.iter().any(|t| t.has(column))
            })
        })
    }

    /// Each role schema's table views, then its KPI views over them.
    pub(super) fn views(&self, kpis: &Kpis<'_>, notes: &mut Vec<String>) -> Vec<Batch> {
        let mut batches = Vec::new();
        for role in &self.schemas {
            let mut shown: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for table in &self.lake.tables {
                if !role.grant.covers(GOLD_SCHEMA, &table.name) {
                    continue;
                }
                match self.table_view(role, table) {
                    Ok((batch, columns)) => {
                        batches.push(batch);
                        shown.insert(table.name.clone(), columns);
                    }
                    Err(reason) => {
                        notes.push(format!("{}.{} left out: {reason}", role.schema, table.name))
                    }
                }
            }
            let available =
                |t: &str, c: &str| shown.get(t).is_some_and(|cols| cols.iter().any(|x| x == c));
            let prefix = format!("view {}.", role.schema);
            batches.extend(
                kpis.views_over(&role.schema, &role.schema, &available, notes)
                    .into_iter()
                    .filter(|b| {
                        b.name
                            .strip_prefix(&prefix)
                            .is_some_and(|view| role.grant.covers(KPI_SCHEMA, view))
                    }),
            );
        }
        batches
    }

    /// The view of `table` for `role`, with the columns it shows.
    fn table_view(&self, role: &RoleSchema, table: &Table) -> Result<(Batch, Vec<String>), String> {
        let filter = match (&role.grant.scope, row_scope(GOLD_SCHEMA, &table.name)) {
            (Scope::Network, _) | (_, RowScope::Reference) => None,
            (scope, RowScope::Columns) if table.has("hospital_id") && table.has("department") => {
                Some(scope_predicate(scope, "t."))
            }
            (scope, RowScope::ViaAdmissions) if table.has("patient_sk") => Some(format!(
                "t.[patient_sk] IN (SELECT a.[patient_sk] FROM {}.[fact_admission] AS a WHERE {})",
                ident(PRIVATE_SCHEMA),
                scope_predicate(scope, "a.")
            )),
            _ => {
                return Err(
                    "its rows cannot be limited to hospitals and departments, so only network-wide roles read it".into(),
                );
            }
        };
        let mut select = Vec::new();
        let mut shown = Vec::new();
        let mut keyed = false;
        for c in &table.columns {
            match role.grant.masks.get(&c.name) {
                Some(Mask::Hide) => continue,
                Some(Mask::Hash) => {
                    keyed = true;
                    select.push(format!(
                        "{} AS {}",
                        hmac(&format!("t.{}", ident(&c.name))),
                        ident(&c.name)
                    ));
                }
                None => select.push(format!("t.{}", ident(&c.name))),
            }
            shown.push(c.name.clone());
        }
        let mut from = format!("{}.{} AS t", ident(PRIVATE_SCHEMA), ident(&table.name));
        if keyed {
            from.push_str(&format!(
                " CROSS JOIN {}.{} AS mk",
                ident(PRIVATE_SCHEMA),
                ident(MASK_KEY_VIEW)
            ));
        }
        let sql = format!(
            "CREATE OR ALTER VIEW {}.{} AS\nSELECT {}\nFROM {from}{};",
            ident(&role.schema),
            ident(&table.name),
            select.join(",\n       "),
            filter.map(|f| format!("\nWHERE {f}")).unwrap_or_default()
        );
        Ok((
            Batch {
                name: format!("view {}.{}", role.schema, table.name),
                sql,
            },
            shown,
        ))
    }

    /// A user per Entra ID group and `SELECT` on its role schema.
    pub(super) fn grants(&self) -> Vec<Batch> {
        let mut batches = Vec::new();
        for role in &self.schemas {
            for group in &role.groups {
                let user = format!("patientflow_{group}");
                batches.push(Batch {
                    name: format!("grant {} to group {group}", role.schema),
                    sql: format!(
                        "IF DATABASE_PRINCIPAL_ID({name}) IS NULL\n    CREATE USER {id} FROM EXTERNAL PROVIDER WITH OBJECT_ID = '{oid}';\nGRANT SELECT ON SCHEMA::{schema} TO {id};",
                        name = literal(&user),
                        id = ident(&user),
                        oid = group.replace('\'', "''"),
                        schema = ident(&role.schema),
                    ),
                });
            }
        }
        batches
    }
}

/// `role` for a network scope; `role_h<hospital>` and `role_h<hospital>_<department>` else.
fn schema_name(role: &str, scope: &Scope) -> String {
    match scope {
        Scope::Network => role.to_string(),
        Scope::Hospital(h) => format!("{role}_h{h}"),
        Scope::Department(h, d) => format!(
            "{role}_h{h}_{}",
            patientflow_ingest::tables::identifier_slug(d)
        ),
    }
}

/// Rows of `scope`, over columns qualified by `prefix`.
fn scope_predicate(scope: &Scope, prefix: &str) -> String {
    match scope {
        Scope::Network => "1 = 1".into(),
        Scope::Hospital(h) => format!("{prefix}[hospital_id] = {h}"),
        Scope::Department(h, d) => format!(
            "{prefix}[hospital_id] = {h} AND {prefix}[department] = {}",
            literal(d)
        ),
    }
}

/// HMAC-SHA-256 of a value's text under the mask key (`mk`), lowercase hex: the query
/// service's `hash` mask, built from `HASHBYTES` (serverless has no HMAC).
fn hmac(value: &str) -> String {
    format!(
        "LOWER(CONVERT(varchar(64), HASHBYTES('SHA2_256', mk.[outer_pad] + HASHBYTES('SHA2_256', mk.[inner_pad] + CAST(CAST({value} AS varchar(256)) AS varbinary(256)))), 2))"
    )
}
