//! Who is asking and what they may read.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::policy::Mask;

/// The caller, from a validated token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// Entra ID object id of the user or service principal (`oid`).
    pub oid: String,
    /// Tenant id (`tid`).
    pub tid: String,
    /// App roles (`roles`).
    pub roles: Vec<String>,
    /// Group object ids (`groups`); empty when the token had a groups overage.
    pub groups: Vec<String>,
}

/// The rows one grant reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Every hospital and department.
    Network,
    /// Every department of one hospital.
    Hospital(i32),
    /// One department of one hospital.
    Department(i32, String),
}

/// One role granted to a principal, with its bound scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The policy role.
    pub role: String,
    /// Table patterns (`schema.table`, `schema.*`).
    pub tables: Vec<String>,
    /// The rows it reaches.
    pub scope: Scope,
    /// Masked columns.
    pub masks: BTreeMap<String, Mask>,
}

impl Grant {
    pub(crate) fn covers(&self, schema: &str, table: &str) -> bool {
        self.tables.iter().any(|p| match p.split_once('.') {
            Some((s, "*")) => s == schema,
            Some((s, t)) => s == schema && t == table,
            None => false,
        })
    }
}

/// How one table is shown to a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableRule {
    /// The scopes of the grants that reach it (any one admits a row).
    pub(crate) scopes: Vec<Scope>,
    /// Columns masked by any grant that reaches it (the stricter wins).
    pub(crate) masks: BTreeMap<String, Mask>,
}

impl TableRule {
    /// Whether every row is in scope.
    pub(crate) fn network(&self) -> bool {
        self.scopes.contains(&Scope::Network)
    }
}

/// What a principal may read: its grants, resolved from the policies.
#[derive(Debug, Clone)]
pub struct Access {
    principal: Principal,
    grants: Vec<Grant>,
    fingerprint: String,
}

impl Access {
    /// `principal` with `grants`.
    pub fn new(principal: Principal, mut grants: Vec<Grant>) -> Self {
        grants.sort();
        grants.dedup();
        let mut fingerprint = String::new();
        for g in &grants {
            let _ = write!(fingerprint, "{:?};", (&g.tables, &g.scope, &g.masks));
        }
        Self {
            principal,
            grants,
            fingerprint,
        }
    }

    /// Everything, unmasked: for tools and tests that query the engine directly.
    pub fn unrestricted(principal: Principal) -> Self {
        let tables = ["gold.*", "silver.*", "ops.*", "kpi.*"].map(String::from);
        Self::new(
            principal,
            vec![Grant {
                role: "unrestricted".into(),
                tables: tables.to_vec(),
                scope: Scope::Network,
                masks: BTreeMap::new(),
            }],
        )
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The grants.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Identifies what the access shows (principals with equal access share cached results).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// How `schema.table` is shown, or `None` when no grant reaches it.
    /// Whether a row of `schema.table` about `hospital` and `department` is in scope, for
    /// endpoints that show figures per department other than through a query.
    pub fn admits(&self, schema: &str, table: &str, hospital: i32, department: &str) -> bool {
        self.rule(schema, table).is_some_and(|rule| {
            rule.scopes.iter().any(|scope| match scope {
                Scope::Network => true,
                Scope::Hospital(h) => *h == hospital,
                Scope::Department(h, d) => *h == hospital && d == department,
            })
        })
    }

    pub(crate) fn rule(&self, schema: &str, table: &str) -> Option<TableRule> {
        let mut rule: Option<TableRule> = None;
        for grant in self.grants.iter().filter(|g| g.covers(schema, table)) {
            let rule = rule.get_or_insert_with(|| TableRule {
                scopes: Vec::new(),
                masks: BTreeMap::new(),
            });
            rule.scopes.push(grant.scope.clone());
            for (column, mask) in &grant.masks {
                let entry = rule.masks.entry(column.clone()).or_insert(*mask);
                *entry = (*entry).max(*mask);
            }
        }
        rule
    }

    /// Whether some grant reaches a table of `schema`.
    pub(crate) fn reaches_schema(&self, schema: &str) -> bool {
        self.grants.iter().any(|g| {
            g.tables
                .iter()
                .any(|p| p.split_once('.').is_some_and(|(s, _)| s == schema))
        })
    }
}
