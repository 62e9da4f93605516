//! The department reference in force (contract §4): the site's department batches in silver,
//! or the shipped reference network before the first one.

use std::path::Path;

use deltalake::arrow::array::{Array, Date32Array, Float64Array, Int32Array, StringArray};
use deltalake::datafusion::prelude::lit;

use super::rules::DEPARTMENT_COLUMNS;
use crate::error::Result;
use crate::reference::{DepartmentRow, ReferenceData};
use crate::storage::{TableRoot, column, scan};
use crate::tables::SILVER_DEPARTMENTS;

/// The department rows in silver, in the order received (empty before the first batch).
async fn silver_departments(root: &TableRoot) -> Result<Vec<DepartmentRow>> {
    let table = root.open(SILVER_DEPARTMENTS).await?;
    let t = SILVER_DEPARTMENTS;
    let existing: Vec<String> = match table.snapshot() {
        Ok(s) => s.schema().fields().map(|f| f.name().to_string()).collect(),
        Err(_) => return Ok(Vec::new()),
    };
    let mut columns = DEPARTMENT_COLUMNS.to_vec();
    columns.push("aliases");
    // Tables written before contract §5.1 have no limit columns.
    let limits = ["warn_after_hours", "stale_after_hours"];
    let has_limits = limits.iter().all(|c| existing.iter().any(|e| e == c));
    if has_limits {
        columns.extend(limits);
    }
    let batches = scan(
        &table,
        t,
        &columns,
        lit(true),
        &["bronze_seq", "source_line"],
    )
    .await?;
    let mut out = Vec::new();
    for b in &batches {
        let hospital = column::<Int32Array>(b, t, "hospital_id")?;
        let name = column::<StringArray>(b, t, "hospital_name")?;
        let department = column::<StringArray>(b, t, "department")?;
        let capacity = column::<Int32Array>(b, t, "bed_capacity")?;
        let staff = column::<Int32Array>(b, t, "staff_count")?;
        let from = column::<Date32Array>(b, t, "effective_from")?;
        let aliases = column::<StringArray>(b, t, "aliases")?;
        let limit = |name| {
            has_limits
                .then(|| column::<Float64Array>(b, t, name))
                .transpose()
        };
        let (warn, stale) = (limit("warn_after_hours")?, limit("stale_after_hours")?);
        let at =
            |a: Option<&Float64Array>, i: usize| a.filter(|a| a.is_valid(i)).map(|a| a.value(i));
        for i in 0..b.num_rows() {
            out.push(DepartmentRow {
                hospital_id: hospital.value(i),
                hospital_name: name.value(i).to_string(),
                department: department.value(i).to_string(),
                bed_capacity: capacity.value(i),
                staff_count: staff.value(i),
                effective_from: from.value_as_date(i).unwrap_or_default(),
                aliases: aliases.is_valid(i).then(|| aliases.value(i).to_string()),
                warn_after_hours: at(warn, i),
                stale_after_hours: at(stale, i),
            });
        }
    }
    Ok(out)
}

/// The department reference in force (contract §4): every department batch in silver, in the
/// order received (later rows win); the shipped reference network only while the table root
/// has never received one.
pub(crate) async fn department_rows(root: &TableRoot) -> Result<Vec<DepartmentRow>> {
    let rows = silver_departments(root).await?;
    if rows.is_empty() {
        return Ok(ReferenceData::reference_network()?.rows().to_vec());
    }
    Ok(rows)
}

/// [`department_rows`] as lookup tables for normalisation.
pub(crate) async fn departments_reference(root: &TableRoot) -> Result<ReferenceData> {
    ReferenceData::from_rows(
        department_rows(root).await?,
        Path::new("<silver/departments, or the shipped reference before the first batch>"),
    )
}
