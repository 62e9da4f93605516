//! `gold/dim_department`: SCD type 2 over `(hospital_id, department)`.
//!
//! A change of bed capacity or staff count opens a version from its `effective_from` date;
//! a row with the same capacity and staff opens none (its name and aliases update the version
//! in place, type 1). A department's first version also covers any time before its
//! effective date, so every stay finds a version. The open-stay limits (contract §5.1) are
//! type 1 as well: the latest value a row of the department states, else configuration, else
//! the contract's defaults.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};

use super::surrogate_key;
use crate::error::{Error, Result};
use crate::open_stays::StayLimits;
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
    pub(crate) limits: StayLimits,
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
    /// for the same department and date replaces an earlier one); `configured` are the
    /// open-stay limits set by configuration, by department name.
    pub(crate) fn from_rows<'a>(
        rows: impl IntoIterator<Item = &'a DepartmentRow>,
        configured: &BTreeMap<String, StayLimits>,
    ) -> Self {
        let mut latest: BTreeMap<(i32, String, chrono::NaiveDate), &DepartmentRow> =
            BTreeMap::new();
        for row in rows {
            latest.insert(
                (row.hospital_id, row.department.clone(), row.effective_from),
                row,
            );
        }
        let mut by_key: BTreeMap<(i32, String), Vec<DepartmentVersion>> = BTreeMap::new();
        let mut stated: BTreeMap<(i32, String), (Option<f64>, Option<f64>)> = BTreeMap::new();
        for ((hospital_id, department, from), row) in latest {
            let limits = stated.entry((hospital_id, department.clone())).or_default();
            limits.0 = row.warn_after_hours.or(limits.0);
            limits.1 = row.stale_after_hours.or(limits.1);
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
                        // Resolved below, once every row of the department is seen.
                        limits: StayLimits::default_for(""),
                    });
                }
            }
        }
        // Type 1 columns take their latest value on every version.
        for (key, versions) in &mut by_key {
            let limits = StayLimits::resolve(&key.1, stated[key], configured);
            if let Some(last) = versions.last().cloned() {
                for v in versions.iter_mut() {
                    v.hospital_name.clone_from(&last.hospital_name);
                    v.aliases.clone_from(&last.aliases);
                    v.limits = limits;
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

    /// The open-stay limits of a department (the defaults for one without a version).
    pub(crate) fn limits(&self, hospital_id: i32, department: &str) -> StayLimits {
        self.at(hospital_id, department, i64::MAX)
            .map_or_else(|| StayLimits::default_for(department), |v| v.limits)
    }

    /// The longest `stale_after` an open stay can have, in microseconds: of any department,
    /// or the defaults' for a department without a version.
    pub(crate) fn max_stale_after(&self) -> i64 {
        self.by_key
            .values()
            .filter_map(|v| v.last())
            .map(|v| v.limits.stale_after())
            .fold(StayLimits::longest_default_stale_after(), i64::max)
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
            Arc::new(
                rows.iter()
                    .map(|v| v.limits.warn_after_hours)
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|v| v.limits.stale_after_hours)
                    .collect::<Float64Array>(),
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
            warn_after_hours: None,
            stale_after_hours: None,
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
        let d = Departments::from_rows(&rows, &BTreeMap::new());
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
        let d = Departments::from_rows(&rows, &BTreeMap::new());
        let caps: Vec<_> = d.by_key[&(1, "ICU".into())]
            .iter()
            .map(|v| v.bed_capacity)
            .collect();
        assert_eq!(caps, vec![10, 12, 14]);
        // The same rows twice change nothing.
        let twice = Departments::from_rows(rows.iter().chain(rows.iter()), &BTreeMap::new());
        assert_eq!(twice.by_key, d.by_key);
    }
}
