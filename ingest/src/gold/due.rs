//! The patients a refresh must rebuild although none of their records is new: the as-of time
//! has passed a recorded end (a planned discharge), made an open stay stale (contract §5.1), or moves the wait
//! of an emergency-department encounter still waiting.

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Int32Array, StringArray, TimestampMicrosecondArray};
use deltalake::datafusion::prelude::{Expr, col, lit};

use super::departments::Departments;
use super::{earliest, lit_ts};
use crate::error::Result;
use crate::storage::{column, scan};
use crate::tables::{FACT_ADMISSION, FACT_ED_VISIT, FACT_STAY_SEGMENT};

/// Patients with a segment whose recorded end (a discharge, or a transfer timed ahead of the
/// clock) lies in `(since, as_of]`: the as-of time has made it an end.
pub(super) async fn ends_passed(
    segments: &DeltaTable,
    since: i64,
    as_of: i64,
) -> Result<BTreeSet<String>> {
    let filter = col("segment_end")
        .gt(lit_ts(since))
        .and(col("segment_end").lt_eq(lit_ts(as_of)));
    patient_ids(segments, FACT_STAY_SEGMENT, filter).await
}

/// The patients of the rows of `table` (`name`) matching `filter`.
async fn patient_ids(table: &DeltaTable, name: &str, filter: Expr) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for b in &scan(table, name, &["patient_id"], filter, &[]).await? {
        let ids = column::<StringArray>(b, name, "patient_id")?;
        out.extend(ids.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// Patients with an open stay not stale at the last refresh (as of `since`) whose
/// `last event + stale_after` is at or before `as_of` now: the as-of time has made it stale
/// (contract §5.1). With them, the earliest time another of those stays goes stale, which the
/// refresh records so that the next ones need not search before it. (File statistics do not
/// narrow this search after a bulk load: a flat record's last event is its receipt, so every
/// month holds stays open until `stale_after` past the load.)
pub(super) async fn stale_passed(
    admissions: &DeltaTable,
    departments: &Departments,
    since: i64,
    as_of: i64,
) -> Result<(BTreeSet<String>, Option<i64>)> {
    let t = FACT_ADMISSION;
    // Not stale at `since`: its last event is within the longest `stale_after` before it.
    let filter = col("discharge_time")
        .is_null()
        .and(col("stale_since").is_null())
        .and(col("last_event_time").gt(lit_ts(since - departments.max_stale_after())));
    let columns = [
        "patient_id",
        "hospital_id",
        "discharge_department",
        "last_event_time",
    ];
    let (mut out, mut next) = (BTreeSet::new(), None::<i64>);
    for b in &scan(admissions, t, &columns, filter, &[]).await? {
        let ids = column::<StringArray>(b, t, "patient_id")?;
        let hospital = column::<Int32Array>(b, t, "hospital_id")?;
        let department = column::<StringArray>(b, t, "discharge_department")?;
        let last = column::<TimestampMicrosecondArray>(b, t, "last_event_time")?;
        for i in 0..b.num_rows() {
            let limits = departments.limits(hospital.value(i), department.value(i));
            let goes_stale = last.value(i) + limits.stale_after();
            if goes_stale <= as_of {
                out.insert(ids.value(i).to_string());
            } else {
                next = earliest(next, Some(goes_stale));
            }
        }
    }
    // Searched: with no such stay left, none goes stale until a record opens one.
    Ok((out, next.or(Some(i64::MAX))))
}

/// Patients with an emergency-department visit still waiting at the last refresh: their
/// wait, and perhaps their outcome, move with the as-of time.
pub(super) async fn ed_waiting(visits: &DeltaTable) -> Result<BTreeSet<String>> {
    patient_ids(visits, FACT_ED_VISIT, col("outcome").eq(lit("waiting"))).await
}
