//! The census's view of `gold/fact_stay_segment`: the segments an incremental refresh reads,
//! and the days whose census a change of segments touches.

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, BooleanArray, Int32Array, StringArray, TimestampMicrosecondArray,
};
use deltalake::datafusion::prelude::Expr;

use super::Occupancy;
use crate::error::Result;
use crate::gold::DAY;
use crate::storage::{Keys, column, scan_keyed};
use crate::tables::FACT_STAY_SEGMENT;

/// Segments from `gold/fact_stay_segment` matching `filter`.
pub(crate) async fn read_occupancies(
    segments: &DeltaTable,
    filter: Expr,
    keys: Option<Keys<'_>>,
) -> Result<Vec<Occupancy>> {
    let t = FACT_STAY_SEGMENT;
    let batches = scan_keyed(
        segments,
        t,
        &[
            "hospital_id",
            "department",
            "segment_start",
            "segment_end",
            "starts_stay",
            "ends_stay",
            "stale_since",
        ],
        filter,
        keys,
        &[],
    )
    .await?;
    let mut out = Vec::new();
    for b in &batches {
        let hospital = column::<Int32Array>(b, t, "hospital_id")?;
        let department = column::<StringArray>(b, t, "department")?;
        let start = column::<TimestampMicrosecondArray>(b, t, "segment_start")?;
        let end = column::<TimestampMicrosecondArray>(b, t, "segment_end")?;
        let starts = column::<BooleanArray>(b, t, "starts_stay")?;
        let ends = column::<BooleanArray>(b, t, "ends_stay")?;
        let stale = column::<TimestampMicrosecondArray>(b, t, "stale_since")?;
        for i in 0..b.num_rows() {
            out.push(Occupancy {
                hospital_id: hospital.value(i),
                department: department.value(i).to_string(),
                start: start.value(i),
                end: end.is_valid(i).then(|| end.value(i)),
                starts_stay: starts.value(i),
                ends_stay: ends.value(i),
                stale_since: stale.is_valid(i).then(|| stale.value(i)),
            });
        }
    }
    Ok(out)
}

/// Days (up to the as-of day) covered by segments present in only one of `old` and `new`.
pub(crate) fn changed_days(old: &[Occupancy], new: &[Occupancy], as_of: i64) -> BTreeSet<i64> {
    let key = |o: &Occupancy| {
        (
            o.hospital_id,
            o.department.clone(),
            o.start,
            o.end,
            o.stale_since,
            o.starts_stay,
            o.ends_stay,
        )
    };
    let old_keys: BTreeSet<_> = old.iter().map(key).collect();
    let new_keys: BTreeSet<_> = new.iter().map(key).collect();
    let last_day = as_of.div_euclid(DAY);
    let mut days = BTreeSet::new();
    for (_, _, start, end, stale, _, _) in old_keys.symmetric_difference(&new_keys) {
        let first = start.div_euclid(DAY);
        let end = [*end, *stale].into_iter().flatten().min();
        let last = end.map_or(last_day, |e| e.div_euclid(DAY)).min(last_day);
        days.extend(first..=last);
    }
    days
}
