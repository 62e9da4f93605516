//! Policy files: which roles exist, which Entra ID app roles and groups grant them, and what
//! each may read — tables, the hospitals and departments in scope, column masks. Deny by
//! default: a principal none of whose roles or groups matches a policy reads nothing.
//!
//! ```yaml
//! roles:
//!   department_clinician:
//!     description: A clinician of one department.
//!     app_role: PatientFlow.Clinician.{hospital}.{department}
//!     groups:
//!       0b7c6a4e-5d0f-4c57-9a53-3c6f1f0d6d11: {hospital: 1, department: Emergency}
//!     scope: department
//!     tables: [gold.*, kpi.*, ops.quality_runs]
//!     masks: {patient_id: hash, bed_id: hide}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::access::{Access, Grant, Principal, Scope};
use super::tables::{RowScope, row_scope};

/// What a policy role's rows are limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// Every hospital and department.
    Network,
    /// Every department of the hospital bound by `{hospital}`.
    Hospital,
    /// The department bound by `{hospital}` and `{department}`.
    Department,
}

impl std::fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScopeKind::Network => "network",
            ScopeKind::Hospital => "hospital",
            ScopeKind::Department => "department",
        })
    }
}

/// How a masked column is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    /// HMAC-SHA-256 of the value's text under the deployment's mask key, hex: joins and counts
    /// of distinct values still work, and a guessed value cannot be confirmed without the key.
    Hash,
    /// NULL of the column's type.
    Hide,
}

/// The hospital and department a group (or a matched app role) stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Hospital number.
    pub hospital: Option<i32>,
    /// Canonical department name.
    pub department: Option<String>,
}

/// One role of a policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// What the role is for.
    #[serde(default)]
    pub description: String,
    /// The Entra ID app role value that grants the role; `{hospital}` and `{department}`
    /// placeholders bind its scope (e.g. `PatientFlow.Clinician.{hospital}.{department}`).
    pub app_role: Option<String>,
    /// Entra ID group object ids that grant the role, each with the scope it stands for.
    #[serde(default)]
    pub groups: BTreeMap<String, Binding>,
    /// What the role's rows are limited to.
    pub scope: ScopeKind,
    /// Tables and views granted: `schema.table` or `schema.*` (`gold`, `silver`, `ops`, `kpi`).
    pub tables: Vec<String>,
    /// Columns shown masked, by name, in every granted table that has them.
    #[serde(default)]
    pub masks: BTreeMap<String, Mask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    roles: BTreeMap<String, Role>,
}

/// A policy file that cannot be used; the server does not start with one.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

/// Every role of the policy files, by name.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    roles: BTreeMap<String, Role>,
}

impl Policies {
    /// Reads every `*.yaml` / `*.yml` file of `dir` (or the one file `dir` names).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let error = |line, message: String| PolicyError {
            file: path.to_path_buf(),
            line,
            message,
        };
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| error(None, format!("cannot list the policy folder: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            return Err(error(
                None,
                "no policy files (*.yaml) here; without policies every request is denied — point --policies at rbac-policies/".into(),
            ));
        }
        let mut policies = Self::default();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| PolicyError {
                file: file.clone(),
                line: None,
                message: format!("cannot read: {e}"),
            })?;
            policies.add(&file, &text)?;
        }
        Ok(policies)
    }

    /// Adds the roles of one policy file's text.
    pub fn add(&mut self, file: &Path, text: &str) -> Result<(), PolicyError> {
        let error = |line, message: String| PolicyError {
            file: file.to_path_buf(),
            line,
            message,
        };
        let parsed: PolicyFile = serde_yaml::from_str(text)
            .map_err(|e| error(e.location().map(|l| l.line()), e.to_string()))?;
        for (name, role) in parsed.roles {
            let line = line_of(text, &name);
            if self.roles.contains_key(&name) {
                return Err(error(
                    line,
                    format!(
                        "role `{name}` is defined twice; role names are unique across the policy files"
                    ),
                ));
            }
            validate(&name, &role).map_err(|(needle, message)| {
                error(needle.and_then(|n| line_of(text, &n)).or(line), message)
            })?;
            self.roles.insert(name, role);
        }
        Ok(())
    }

    /// The roles by name.
    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    /// What `principal` may read: a grant per matching app role and group.
    pub fn access(&self, principal: Principal) -> Access {
        let mut grants = Vec::new();
        for (name, role) in &self.roles {
            let bindings = principal
                .roles
                .iter()
                .filter_map(|value| match_pattern(role.app_role.as_deref()?, value))
                .chain(
                    principal
                        .groups
                        .iter()
                        .filter_map(|g| role.groups.get(g).cloned()),
                );
            for binding in bindings {
                if let Some(scope) = scope_of(role.scope, &binding) {
                    grants.push(Grant {
                        role: name.clone(),
                        tables: role.tables.clone(),
                        scope,
                        masks: role.masks.clone(),
                    });
                }
            }
        }
        Access::new(principal, grants)
    }

    /// The app role value that grants `role` with `binding` (for development tokens).
    pub fn app_role_value(&self, role: &str, binding: &Binding) -> Result<String, String> {
        let known = || self.roles.keys().cloned().collect::<Vec<_>>().join(", ");
        let spec = self
            .roles
            .get(role)
            .ok_or_else(|| format!("no role `{role}` in the policies; roles: {}", known()))?;
        let pattern = spec.app_role.as_deref().ok_or_else(|| {
            format!("role `{role}` is granted by groups only, not by an app role")
        })?;
        let mut value = pattern.to_string();
        for (placeholder, bound) in [
            ("{hospital}", binding.hospital.map(|h| h.to_string())),
            ("{department}", binding.department.clone()),
        ] {
            if value.contains(placeholder) {
                let bound = bound.ok_or_else(|| {
                    format!(
                        "role `{role}` needs --{}",
                        placeholder.trim_matches(['{', '}'])
                    )
                })?;
                value = value.replace(placeholder, &bound);
            }
        }
        Ok(value)
    }
}

/// The scope a role of `kind` has with `binding`, when the binding is complete.
pub(crate) fn scope_of(kind: ScopeKind, binding: &Binding) -> Option<Scope> {
    match kind {
        ScopeKind::Network => Some(Scope::Network),
        ScopeKind::Hospital => Some(Scope::Hospital(binding.hospital?)),
        ScopeKind::Department => Some(Scope::Department(
            binding.hospital?,
            binding.department.clone()?,
        )),
    }
}

/// Matches an app role value against a pattern with `{hospital}` / `{department}`
/// placeholders; literal parts match exactly (Entra ID role values are case-sensitive).
fn match_pattern(pattern: &str, value: &str) -> Option<Binding> {
    let mut binding = Binding::default();
    let mut rest = value;
    let mut pattern = pattern;
    loop {
        let Some(open) = pattern.find('{') else {
            return (rest == pattern).then_some(binding);
        };
        rest = rest.strip_prefix(&pattern[..open])?;
        let close = open + pattern[open..].find('}')?;
        let name = &pattern[open + 1..close];
        pattern = &pattern[close + 1..];
        // A placeholder takes everything up to the next literal part (or the end).
        let next = pattern.find('{').map_or(pattern, |i| &pattern[..i]);
        let end = if next.is_empty() {
            rest.len()
        } else {
            rest.find(next)?
        };
        let (captured, tail) = rest.split_at(end);
        if captured.is_empty() {
            return None;
        }
        match name {
            "hospital" => binding.hospital = Some(captured.parse().ok()?),
            "department" => binding.department = Some(captured.to_string()),
            _ => return None,
        }
        rest = tail;
    }
}

/// Checks one role; an error names the text to find its line by and says what is wrong.
fn validate(name: &str, role: &Role) -> Result<(), (Option<String>, String)> {
    let needs: &[&str] = match role.scope {
        ScopeKind::Network => &[],
        ScopeKind::Hospital => &["hospital"],
        ScopeKind::Department => &["hospital", "department"],
    };
    if role.app_role.is_none() && role.groups.is_empty() {
        return Err((
            None,
            format!("role `{name}` has neither `app_role` nor `groups`, so nothing can grant it"),
        ));
    }
    if let Some(pattern) = &role.app_role {
        for placeholder in ["hospital", "department"] {
            let present = pattern.contains(&format!("{{{placeholder}}}"));
            if present != needs.contains(&placeholder) {
                return Err((
                    Some(pattern.clone()),
                    format!(
                        "role `{name}`: a `{}` scope {} `{{{placeholder}}}` in app_role `{pattern}`",
                        role.scope,
                        if present { "has no use for" } else { "needs" }
                    ),
                ));
            }
        }
        let stripped = pattern
            .replace("{hospital}", "")
            .replace("{department}", "");
        if stripped.contains(['{', '}']) {
            return Err((
                Some(pattern.clone()),
                format!(
                    "role `{name}`: app_role `{pattern}` has an unknown placeholder; use {{hospital}} and {{department}}"
                ),
            ));
        }
    }
    for (group, binding) in &role.groups {
        if scope_of(role.scope, binding).is_none() {
            return Err((
                Some(group.clone()),
                format!(
                    "role `{name}`: group `{group}` must give {} for a `{}` scope",
                    needs.join(" and "),
                    role.scope
                ),
            ));
        }
    }
    if role.tables.is_empty() {
        return Err((None, format!("role `{name}` grants no tables")));
    }
    for pattern in &role.tables {
        let scope = table_pattern_scope(pattern).ok_or_else(|| {
            (
                Some(pattern.clone()),
                format!(
                    "role `{name}`: `{pattern}` is not a table; use schema.table or schema.* with schema gold, silver, ops or kpi"
                ),
            )
        })?;
        if role.scope != ScopeKind::Network && scope == Some(RowScope::NetworkOnly) {
            return Err((
                Some(pattern.clone()),
                format!(
                    "role `{name}`: `{pattern}` holds patient data that cannot be limited to a hospital or department; grant it to a network-scoped role only"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `pattern` names tables, and if it is one table, how its rows are scoped.
fn table_pattern_scope(pattern: &str) -> Option<Option<RowScope>> {
    let (schema, table) = pattern.split_once('.')?;
    if table == "*" {
        return ["gold", "silver", "ops", "kpi"]
            .contains(&schema)
            .then_some(None);
    }
    if schema == "kpi" {
        return Some(None);
    }
    patientflow_semantic::EXPOSED_TABLES
        .contains(&format!("{schema}/{table}").as_str())
        .then(|| Some(row_scope(schema, table)))
}

/// The first line (1-based) of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_bind_hospital_and_department() {
        let p = "PatientFlow.Clinician.{hospital}.{department}";
        assert_eq!(
            match_pattern(p, "PatientFlow.Clinician.3.Emergency"),
            Some(Binding {
                hospital: Some(3),
                department: Some("Emergency".into())
            })
        );
        assert_eq!(match_pattern(p, "PatientFlow.Clinician.x.Emergency"), None);
        assert_eq!(match_pattern(p, "patientflow.clinician.3.Emergency"), None);
        assert_eq!(match_pattern(p, "PatientFlow.Clinician.3."), None);
        assert_eq!(
            match_pattern("PatientFlow.NetworkAdmin", "PatientFlow.NetworkAdmin"),
            Some(Binding::default())
        );
        assert_eq!(
            match_pattern("PatientFlow.NetworkAdmin", "PatientFlow.NetworkAdminX"),
            None
        );
    }

    #[test]
    fn a_bad_policy_names_its_line() {
        let text = "roles:\n  nurse:\n    app_role: Nurse.{hospital}\n    scope: department\n    tables: [gold.*]\n";
        let err = Policies::default()
            .add(Path::new("nurse.yaml"), text)
            .unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert_eq!(
            err.to_string(),
            "nurse.yaml:3: role `nurse`: a `department` scope needs `{department}` in app_role `Nurse.{hospital}`"
        );

        let text = "roles:\n  nurse:\n    app_role: Nurse\n    scope: network\n    tables: [gold.fact_admision]\n";
        let err = Policies::default()
            .add(Path::new("nurse.yaml"), text)
            .unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");

        let text = "roles:\n  nurse:\n    app_role: Nurse\n    scope: everywhere\n";
        let err = Policies::default()
            .add(Path::new("nurse.yaml"), text)
            .unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");

        let text = "roles:\n  nurse:\n    app_role: Nurse.{hospital}\n    scope: hospital\n    tables: [silver.quarantine]\n";
        let err = Policies::default()
            .add(Path::new("nurse.yaml"), text)
            .unwrap_err();
        assert!(err.message.contains("network-scoped"), "{err}");
    }
}
