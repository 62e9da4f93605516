//! Open stays that stopped reporting (contract §5.1), as of the latest gold refresh: per
//! hospital and department, the open stays, those long-open and those stale, and the oldest
//! last event among them. They are findings about the source, not rejected records.

use std::collections::BTreeMap;

use deltalake::arrow::array::{
    Array, Float64Array, Int32Array, StringArray, TimestampMicrosecondArray,
};
use deltalake::datafusion::prelude::{col, lit};
use serde::Serialize;

use crate::error::Result;
use crate::gold::refreshed_as_of;
use crate::storage::{TableRoot, column, scan};
use crate::tables::{DIM_DEPARTMENT, FACT_ADMISSION};

const HOUR: f64 = 3_600_000_000.0;

/// The open stays of one department as of the latest refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpenStays {
    /// Hospital number.
    pub hospital_id: i32,
    /// The stays' current department.
    pub department: String,
    /// Stays with no discharge at the as-of time (stale ones included).
    pub open: u64,
    /// Open, not stale, and quiet for longer than the department's `warn_after`.
    pub long_open: u64,
    /// Open and quiet for the department's `stale_after` or longer: in no census.
    pub stale: u64,
    /// The oldest last event among the open stays (RFC 3339).
    pub oldest_last_event: Option<String>,
}

/// The as-of time of the latest refresh and the open stays then, by hospital and department
/// (none before the first refresh).
pub(crate) async fn load(root: &TableRoot) -> Result<(Option<i64>, Vec<OpenStays>)> {
    let admissions = root.open(FACT_ADMISSION).await?;
    let Some(as_of) = refreshed_as_of(&admissions).await? else {
        return Ok((None, Vec::new()));
    };
    let warn_after = warn_limits(root).await?;
    let t = FACT_ADMISSION;
    let columns = [
        "hospital_id",
        "discharge_department",
        "last_event_time",
        "stale_since",
    ];
    let batches = scan(
        &admissions,
        t,
        &columns,
        col("discharge_time").is_null(),
        &[],
    )
    .await?;
    let mut out: BTreeMap<(i32, String), (OpenStays, i64)> = BTreeMap::new();
    for b in &batches {
        let hospital = column::<Int32Array>(b, t, "hospital_id")?;
        let department = column::<StringArray>(b, t, "discharge_department")?;
        let last = column::<TimestampMicrosecondArray>(b, t, "last_event_time")?;
        let stale = column::<TimestampMicrosecondArray>(b, t, "stale_since")?;
        for i in 0..b.num_rows() {
            let key = (hospital.value(i), department.value(i).to_string());
            let warn = warn_after.get(&key).copied();
            let (counts, oldest) = out.entry(key).or_insert_with_key(|(h, d)| {
                let counts = OpenStays {
                    hospital_id: *h,
                    department: d.clone(),
                    ..OpenStays::default()
                };
                (counts, i64::MAX)
            });
            counts.open += 1;
            *oldest = (*oldest).min(last.value(i));
            if stale.is_valid(i) {
                counts.stale += 1;
            } else if warn.is_some_and(|w| as_of - last.value(i) > w) {
                counts.long_open += 1;
            }
        }
    }
    let rows = out
        .into_values()
        .map(|(mut counts, oldest)| {
            counts.oldest_last_event =
                chrono::DateTime::from_timestamp_micros(oldest).map(|d| d.to_rfc3339());
            counts
        })
        .collect();
    Ok((Some(as_of), rows))
}

/// `warn_after` in microseconds per department, from the current versions the refresh used.
async fn warn_limits(root: &TableRoot) -> Result<BTreeMap<(i32, String), i64>> {
    let t = DIM_DEPARTMENT;
    let table = root.open(t).await?;
    let columns = [
        "hospital_id",
        "department",
        "warn_after_hours",
        "is_current",
    ];
    let batches = scan(&table, t, &columns, col("is_current").eq(lit(true)), &[]).await?;
    let mut out = BTreeMap::new();
    for b in &batches {
        let hospital = column::<Int32Array>(b, t, "hospital_id")?;
        let department = column::<StringArray>(b, t, "department")?;
        let warn = column::<Float64Array>(b, t, "warn_after_hours")?;
        for i in 0..b.num_rows() {
            let key = (hospital.value(i), department.value(i).to_string());
            out.insert(key, (warn.value(i) * HOUR) as i64);
        }
    }
    Ok(out)
}
