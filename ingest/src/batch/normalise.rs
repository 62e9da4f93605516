//! A clean batch row, normalised (contract §2 and §4), with the key that finds its duplicates.

use super::Dataset;
use super::rules::Row;
use crate::reference::DepartmentRow;
use crate::silver::record::{Field, gender};
use crate::tables::attribute_column;

/// A clean batch row, normalised.
#[derive(Debug)]
pub(super) struct Normalised {
    pub(super) key: u128,
    pub(super) department: Option<DepartmentRow>,
    pub(super) patient_id: String,
    pub(super) gender: &'static str,
    pub(super) age: Option<i32>,
    pub(super) updated_at: i64,
    /// Further attributes as (silver column, value).
    pub(super) extras: Vec<(String, String)>,
}

/// EHR columns that are not attributes.
const EHR_BASE: [&str; 4] = ["patient_id", "gender", "age", "updated_at"];

pub(super) fn normalise(dataset: Dataset, row: &Row<'_>, received_at: i64) -> Normalised {
    let int = |name: &str| match row.int(name) {
        Field::Valid(v) => i32::try_from(v).ok(),
        _ => None,
    };
    let mut n = Normalised {
        key: 0,
        department: None,
        patient_id: row.get("patient_id").unwrap_or_default().to_string(),
        gender: gender(&crate::silver::json::Scalar::Str(
            row.get("gender").unwrap_or_default().into(),
        )),
        age: int("age").filter(|a| (0..=120).contains(a)),
        updated_at: match row.timestamp("updated_at") {
            Field::Valid(t) => t,
            _ => received_at,
        },
        extras: Vec::new(),
    };
    let text = match dataset {
        Dataset::Departments => {
            let d = DepartmentRow {
                hospital_id: int("hospital_id").unwrap_or_default(),
                hospital_name: row.get("hospital_name").unwrap_or_default().to_string(),
                department: row
                    .get("department")
                    .and_then(|d| row.reference.canonical_department(d))
                    .unwrap_or_default()
                    .to_string(),
                bed_capacity: int("bed_capacity").unwrap_or_default(),
                staff_count: int("staff_count").unwrap_or_default(),
                effective_from: row
                    .get("effective_from")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or_default(),
                aliases: row.get("aliases").map(str::to_string),
                warn_after_hours: row.limits().0,
                stale_after_hours: row.limits().1,
            };
            let text = format!("{d:?}");
            n.department = Some(d);
            text
        }
        Dataset::Ehr => {
            if let Some(fields) = &row.fields {
                n.extras = fields
                    .iter()
                    .filter(|(k, v)| !EHR_BASE.contains(&k.as_str()) && !v.trim().is_empty())
                    .map(|(k, v)| (attribute_column(k), v.trim().to_string()))
                    .collect();
            }
            format!(
                "{}\u{1f}{}\u{1f}{:?}\u{1f}{}\u{1f}{:?}",
                n.patient_id, n.gender, n.age, n.updated_at, n.extras
            )
        }
    };
    n.key = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
    n
}
