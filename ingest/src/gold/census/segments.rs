//! The census's view of `gold/fact_stay_segment`: the segments an incremental refresh reads,
//! and the days whose census a change of segments touches.

use std::collections::{BTreeMap, BTreeSet};

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

/// Days (up to the as-of day) whose census differs between the segments `old` and `new`.
///
/// A segment present on one side only changes every day it covers. A segment whose start is
/// the same on both sides and whose leaving alone moved (a late discharge, a stay gone stale)
/// changes only the days between its two leaving times: a stay open for years that goes stale
/// today recomputes today, not its years.
pub(crate) fn changed_days(old: &[Occupancy], new: &[Occupancy], as_of: i64) -> BTreeSet<i64> {
    let leave_day = |o: &Occupancy| o.last_day(as_of);
    let old_keys: BTreeSet<_> = old.iter().map(key).collect();
    let new_keys: BTreeSet<_> = new.iter().map(key).collect();
    // The segments on one side only, by where they start.
    let mut moved: BTreeMap<_, (Vec<&Occupancy>, Vec<&Occupancy>)> = BTreeMap::new();
    for o in old.iter().filter(|o| !new_keys.contains(&key(o))) {
        moved.entry(start_key(o)).or_default().0.push(o);
    }
    for o in new.iter().filter(|o| !old_keys.contains(&key(o))) {
        moved.entry(start_key(o)).or_default().1.push(o);
    }
    let mut days = BTreeSet::new();
    for (_, (was, is)) in moved {
        if let ([was], [is]) = (was.as_slice(), is.as_slice()) {
            let (a, b) = (leave_day(was), leave_day(is));
            days.extend(a.min(b)..=a.max(b));
        } else {
            for o in was.into_iter().chain(is) {
                days.extend(o.start.div_euclid(DAY)..=leave_day(o));
            }
        }
    }
    days
}

/// What the census counts of a segment.
type SegmentKey<'a> = (i32, &'a str, i64, Option<i64>, Option<i64>, bool, bool);

fn key(o: &Occupancy) -> SegmentKey<'_> {
    (
        o.hospital_id,
        &o.department,
        o.start,
        o.end,
        o.stale_since,
        o.starts_stay,
        o.ends_stay,
    )
}

/// Where a segment starts, and whether it starts its stay: what a late discharge or a stay
/// going stale leaves as it was.
fn start_key(o: &Occupancy) -> (i32, &str, i64, bool) {
    (o.hospital_id, &o.department, o.start, o.starts_stay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start_day: i64, end_day: Option<i64>, stale_day: Option<i64>) -> Occupancy {
        Occupancy {
            hospital_id: 1,
            department: "ICU".into(),
            start: start_day * DAY + 3_600_000_000,
            end: end_day.map(|d| d * DAY),
            starts_stay: true,
            ends_stay: end_day.is_some(),
            stale_since: stale_day.map(|d| d * DAY),
        }
    }

    #[test]
    fn a_segment_whose_leaving_moved_changes_the_days_between_not_its_whole_span() {
        let as_of = 5_000 * DAY;
        let days = |old: &[Occupancy], new: &[Occupancy]| {
            let d = changed_days(old, new, as_of);
            (d.first().copied(), d.last().copied(), d.len())
        };
        // Open for years, stale from day 4990: the days from then to the as-of day.
        let open = segment(1_000, None, None);
        let stale = segment(1_000, None, Some(4_990));
        assert_eq!(
            days(std::slice::from_ref(&open), &[stale]),
            (Some(4_990), Some(5_000), 11)
        );
        // A late discharge on day 1002 of a stay open since day 1000.
        let closed = segment(1_000, Some(1_002), None);
        assert_eq!(
            days(std::slice::from_ref(&open), &[closed]),
            (Some(1_002), Some(5_000), 3_999)
        );
        // A late discharge on day 4995 of a stay stale since day 4990: the days between.
        let stale_then_closed = segment(1_000, Some(4_995), None);
        assert_eq!(
            days(&[segment(1_000, None, Some(4_990))], &[stale_then_closed]),
            (Some(4_990), Some(4_995), 6)
        );
        // A new stay or a removed one: every day it covers; an unchanged one: none.
        let short = segment(4_000, Some(4_003), None);
        assert_eq!(
            days(&[], std::slice::from_ref(&short)),
            (Some(4_000), Some(4_003), 4)
        );
        assert_eq!(
            days(std::slice::from_ref(&short), &[]),
            (Some(4_000), Some(4_003), 4)
        );
        assert_eq!(
            days(std::slice::from_ref(&short), std::slice::from_ref(&short)),
            (None, None, 0)
        );
        // A segment that moved its start: both spans.
        let moved = segment(4_998, None, None);
        assert_eq!(
            days(&[segment(4_996, None, None)], &[moved]),
            (Some(4_996), Some(5_000), 5)
        );
    }
}
