//! `gold/dim_department`: SCD type 2 over `(hospital_id, department)`.
//!
//! A change of bed capacity or staff count opens a version from its `effective_from` date;
//! a row with the same capacity and staff opens none (its name and aliases update the version
//! in place, type 1). A department's first version also covers any time before its
//! effective date, so every stay finds a version.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
};

use super::surrogate_key;
use crate::error::{Error, Result};
use crate::reference::DepartmentRow;
use crate::tables::{DIM_DEPARTMENT, DIM_DEPARTMENT_SPEC, timestamp_array};

/// One version of a department.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DepartmentVersion {
    pub(crate) sk: i64,
    pub(crate) hospital_id: i32,
    pub(crate) hospital_name: String,
    pub(crate) department: String,
    pub(crate) bed_capacity: i32,
    pub(crate) staff_count: i32,
    pub(crate) aliases: Option<String>,
    pub(crate) valid_from: i64,
    pub(crate) valid_to: Option<i64>,
}

/// Every department's versions, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Departments {
    by_key: BTreeMap<(i32, String), Vec<DepartmentVersion>>,
}

fn midnight_micros(date: chrono::NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map_or(0, |d| d.and_utc().timestamp_micros())
}

impl Departments {
    /// Builds the versions from reference rows in the order they were received (a later row
    /// for the same department and date replaces an earlier one).
    pub(crate) fn from_rows<'a>(rows: impl IntoIterator<Item = &'a DepartmentRow>) -> Self {
        let mut latest: BTreeMap<(i32, String, chrono::NaiveDate), &DepartmentRow> =
            BTreeMap::new();
        for row in rows {
            latest.insert(
                (row.hospital_id, row.department.clone(), row.effective_from),
                row,
            );
        }
        let mut by_key: BTreeMap<(i32, String), Vec<DepartmentVersion>> = BTreeMap::new();
        for ((hospital_id, department, from), row) in latest {
            let versions = by_key.entry((hospital_id, department.clone())).or_default();
            match versions.last_mut() {
                Some(v)
                    if v.bed_capacity == row.bed_capacity && v.staff_count == row.staff_count =>
                {
                    v.hospital_name = row.hospital_name.clone();
                    v.aliases = row.aliases.clone();
                }
                _ => {
                    let valid_from = midnight_micros(from);
                    if let Some(prev) = versions.last_mut() {
                        prev.valid_to = Some(valid_from);
                    }
                    versions.push(DepartmentVersion {
                        sk: surrogate_key(&[&hospital_id.to_string(), &department], valid_from),
                        hospital_id,
                        hospital_name: row.hospital_name.clone(),
                        department,
                        bed_capacity: row.bed_capacity,
                        staff_count: row.staff_count,
                        aliases: row.aliases.clone(),
                        valid_from,
                        valid_to: None,
                    });
                }
            }
        }
        // Type 1 columns take their latest value on every version.
        for versions in by_key.values_mut() {
            if let Some(last) = versions.last().cloned() {
                for v in versions.iter_mut() {
                    v.hospital_name.clone_from(&last.hospital_name);
                    v.aliases.clone_from(&last.aliases);
                }
            }
        }
        Self { by_key }
    }

    /// The departments, in key order (a stable index for dense grids).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &(i32, String)> {
        self.by_key.keys()
    }

    /// The version of a department effective at `t` (its first version before it began).
    pub(crate) fn at(
        &self,
        hospital_id: i32,
        department: &str,
        t: i64,
    ) -> Option<&DepartmentVersion> {
        let versions = self.by_key.get(&(hospital_id, department.to_string()))?;
        versions
            .iter()
            .rev()
            .find(|v| v.valid_from <= t)
            .or_else(|| versions.first())
    }

    /// All versions as `gold/dim_department` rows.
    pub(crate) fn to_batch(&self) -> Result<RecordBatch> {
        let rows: Vec<&DepartmentVersion> = self.by_key.values().flatten().collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(rows.iter().map(|v| v.sk).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|v| v.hospital_id).collect::<Int32Array>()),
            Arc::new(
                rows.iter()
                    .map(|v| Some(v.hospital_name.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|v| Some(v.department.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(rows.iter().map(|v| v.bed_capacity).collect::<Int32Array>()),
            Arc::new(rows.iter().map(|v| v.staff_count).collect::<Int32Array>()),
            Arc::new(
                rows.iter()
                    .map(|v| v.aliases.as_deref())
                    .collect::<StringArray>(),
            ),
            timestamp_array(rows.iter().map(|v| Some(v.valid_from)).collect()),
            timestamp_array(rows.iter().map(|v| v.valid_to).collect()),
            Arc::new(
                rows.iter()
                    .map(|v| Some(v.valid_to.is_none()))
                    .collect::<BooleanArray>(),
            ),
        ];
        RecordBatch::try_new(DIM_DEPARTMENT_SPEC.schema(), columns)
            .map_err(|e| Error::arrow(DIM_DEPARTMENT, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(capacity: i32, staff: i32, from: &str) -> DepartmentRow {
        DepartmentRow {
            hospital_id: 1,
            hospital_name: "A".into(),
            department: "ICU".into(),
            bed_capacity: capacity,
            staff_count: staff,
            effective_from: from.parse().unwrap(),
            aliases: None,
        }
    }

    fn t(day: &str) -> i64 {
        midnight_micros(day.parse().unwrap())
    }

    #[test]
    fn a_change_opens_a_version_and_no_change_opens_none() {
        let rows = [
            row(10, 5, "2026-01-01"),
            row(10, 5, "2026-02-01"),
            row(12, 5, "2026-03-01"),
            row(12, 6, "2026-04-01"),
        ];
        let d = Departments::from_rows(&rows);
        let v: Vec<_> = d.by_key[&(1, "ICU".into())]
            .iter()
            .map(|v| (v.bed_capacity, v.staff_count, v.valid_from, v.valid_to))
            .collect();
        assert_eq!(
            v,
            vec![
                (10, 5, t("2026-01-01"), Some(t("2026-03-01"))),
                (12, 5, t("2026-03-01"), Some(t("2026-04-01"))),
                (12, 6, t("2026-04-01"), None),
            ]
        );
        assert_eq!(d.at(1, "ICU", t("2026-03-15")).unwrap().bed_capacity, 12);
        assert_eq!(d.at(1, "ICU", t("2025-06-01")).unwrap().bed_capacity, 10);
    }

    #[test]
    fn a_late_version_is_inserted_into_the_past() {
        let rows = [
            row(10, 5, "2026-01-01"),
            row(14, 5, "2026-03-01"),
            row(12, 5, "2026-02-01"),
        ];
        let d = Departments::from_rows(&rows);
        let caps: Vec<_> = d.by_key[&(1, "ICU".into())]
            .iter()
            .map(|v| v.bed_capacity)
            .collect();
        assert_eq!(caps, vec![10, 12, 14]);
        // The same rows twice change nothing.
        let twice = Departments::from_rows(rows.iter().chain(rows.iter()));
        assert_eq!(twice.by_key, d.by_key);
    }
}
