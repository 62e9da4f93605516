//! Department reference data: hospitals, departments, bed capacity, staff and name aliases.
//!
//! The shipped default covers the reference network (7 hospitals × 7 departments); a site can
//! pass its own CSV with the same header (contract §4).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The reference network's department CSV, embedded so the default needs no input.
pub const DEFAULT_DEPARTMENTS_CSV: &str = include_str!("../reference/departments.csv");

/// The canonical department names of contract §2, accepted in any case whatever the
/// reference data holds.
pub const CANONICAL_DEPARTMENTS: [&str; 7] = [
    "Emergency",
    "Surgery",
    "ICU",
    "Pediatrics",
    "Maternity",
    "Oncology",
    "Cardiology",
];

/// One row of the department reference data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentRow {
    /// Hospital number.
    pub hospital_id: i32,
    /// Hospital display name.
    pub hospital_name: String,
    /// Canonical department name.
    pub department: String,
    /// Staffed beds.
    pub bed_capacity: i32,
    /// Staff headcount.
    pub staff_count: i32,
    /// First day this row is effective (`YYYY-MM-DD`).
    pub effective_from: chrono::NaiveDate,
    /// Other names the department is known by, `;`-separated.
    #[serde(default)]
    pub aliases: Option<String>,
    /// Hours without an event before an open stay is long-open (contract §5.1); optional.
    #[serde(default)]
    pub warn_after_hours: Option<f64>,
    /// Hours without an event before an open stay is stale (contract §5.1); optional.
    #[serde(default)]
    pub stale_after_hours: Option<f64>,
}

impl DepartmentRow {
    /// What is wrong with the row's open-stay limits, if anything: each must be a positive
    /// number of hours, and `warn_after_hours` below `stale_after_hours` when both are given.
    pub fn limits_error(&self) -> Option<String> {
        let bad = |v: Option<f64>| v.is_some_and(|h| !(h.is_finite() && h > 0.0));
        if bad(self.warn_after_hours) || bad(self.stale_after_hours) {
            return Some("warn_after_hours and stale_after_hours must be positive hours".into());
        }
        match (self.warn_after_hours, self.stale_after_hours) {
            (Some(w), Some(s)) if w >= s => Some(format!(
                "warn_after_hours ({w}) must be below stale_after_hours ({s})"
            )),
            _ => None,
        }
    }
}

/// Lookup tables derived from the department reference data.
#[derive(Debug, Clone)]
pub struct ReferenceData {
    rows: Vec<DepartmentRow>,
    /// lower-cased name or alias → canonical name
    names: HashMap<String, String>,
    hospitals: BTreeMap<i32, String>,
}

impl ReferenceData {
    /// The shipped reference network.
    pub fn reference_network() -> Result<Self> {
        Self::from_csv(
            DEFAULT_DEPARTMENTS_CSV.as_bytes(),
            Path::new("<built-in departments.csv>"),
        )
    }

    /// Read a department CSV from a file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_csv(&bytes, path)
    }

    /// Parse department CSV bytes; `origin` names the source in errors.
    pub fn from_csv(bytes: &[u8], origin: &Path) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidInput {
            path: origin.to_path_buf(),
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let mut rows = Vec::new();
        for (i, row) in reader.deserialize::<DepartmentRow>().enumerate() {
            // Line numbers are 1-based and the header is line 1.
            let row = row.map_err(|e| invalid(format!("line {}: {e}", i + 2)))?;
            if row.bed_capacity <= 0 {
                return Err(invalid(format!(
                    "line {}: bed_capacity must be positive",
                    i + 2
                )));
            }
            if let Some(reason) = row.limits_error() {
                return Err(invalid(format!("line {}: {reason}", i + 2)));
            }
            rows.push(row);
        }
        Self::from_rows(rows, origin)
    }

    /// Lookup tables over department rows; `origin` names the source in errors.
    pub fn from_rows(rows: Vec<DepartmentRow>, origin: &Path) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidInput {
            path: origin.to_path_buf(),
            reason,
        };
        if rows.is_empty() {
            return Err(invalid(
                "no departments; expected header `hospital_id,hospital_name,department,\
                 bed_capacity,staff_count,effective_from[,aliases]` and at least one row"
                    .into(),
            ));
        }
        let mut names: HashMap<String, String> = CANONICAL_DEPARTMENTS
            .iter()
            .map(|d| (d.to_lowercase(), d.to_string()))
            .collect();
        let mut hospitals = BTreeMap::new();
        for row in &rows {
            hospitals.insert(row.hospital_id, row.hospital_name.clone());
            let aliases = row.aliases.as_deref().unwrap_or("").split(';');
            for name in std::iter::once(row.department.as_str()).chain(aliases) {
                let key = name.trim().to_lowercase();
                if key.is_empty() {
                    continue;
                }
                match names.get(&key) {
                    Some(existing) if existing != &row.department => {
                        return Err(invalid(format!(
                            "alias `{name}` names both `{existing}` and `{}`",
                            row.department
                        )));
                    }
                    _ => {
                        names.insert(key, row.department.clone());
                    }
                }
            }
        }
        Ok(Self {
            rows,
            names,
            hospitals,
        })
    }

    /// Canonical department for a name or alias, in any case, trimmed.
    pub fn canonical_department(&self, name: &str) -> Option<&str> {
        let trimmed = name.trim();
        // Fast path: exact canonical or alias spelling, no allocation.
        if let Some(found) = self.names.get(trimmed) {
            return Some(found);
        }
        self.names.get(&trimmed.to_lowercase()).map(String::as_str)
    }

    /// Whether the hospital exists in the reference data.
    pub fn has_hospital(&self, hospital_id: i64) -> bool {
        i32::try_from(hospital_id).is_ok_and(|id| self.hospitals.contains_key(&id))
    }

    /// All rows, in file order.
    pub fn rows(&self) -> &[DepartmentRow] {
        &self.rows
    }

    /// Hospital ids and names.
    pub fn hospitals(&self) -> &BTreeMap<i32, String> {
        &self.hospitals
    }

    /// Aliases (not canonical names) for a canonical department, from every row.
    pub fn aliases_of(&self, department: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.department == department)
            .flat_map(|r| r.aliases.as_deref().unwrap_or("").split(';'))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_network_has_seven_hospitals_and_departments() {
        let r = ReferenceData::reference_network().unwrap();
        assert_eq!(r.hospitals().len(), 7);
        assert_eq!(r.rows().len(), 49);
        assert_eq!(r.canonical_department(" er "), Some("Emergency"));
        assert_eq!(r.canonical_department("ED"), Some("Emergency"));
        assert_eq!(r.canonical_department("icu"), Some("ICU"));
        assert_eq!(r.canonical_department("Radiology"), None);
        assert!(r.has_hospital(7));
        assert!(!r.has_hospital(8));
    }

    #[test]
    fn bad_csv_names_the_line() {
        let csv = "hospital_id,hospital_name,department,bed_capacity,staff_count,effective_from\n\
                   1,A,ICU,10,5,2026-01-01\n1,A,Surgery,ten,5,2026-01-01\n";
        let err = ReferenceData::from_csv(csv.as_bytes(), Path::new("d.csv")).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn ambiguous_alias_is_refused() {
        let csv = "hospital_id,hospital_name,department,bed_capacity,staff_count,effective_from,aliases\n\
                   1,A,ICU,10,5,2026-01-01,X\n1,A,Surgery,10,5,2026-01-01,x\n";
        let err = ReferenceData::from_csv(csv.as_bytes(), Path::new("d.csv")).unwrap_err();
        assert!(err.to_string().contains("alias"), "{err}");
    }
}
