//! `gold/dim_date`: one row per calendar day covering the data.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, Weekday};
use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Int32Array, RecordBatch, StringArray,
};

use super::DAY;
use crate::error::{Error, Result};
use crate::tables::{DIM_DATE, DIM_DATE_SPEC};

/// Calendar rows for days `first..=last` (days since the epoch).
pub(crate) fn calendar(first: i64, last: i64) -> Result<RecordBatch> {
    let days: Vec<NaiveDate> = (first..=last)
        .filter_map(|d| chrono::DateTime::from_timestamp_micros(d * DAY).map(|t| t.date_naive()))
        .collect();
    let int = |f: &dyn Fn(&NaiveDate) -> i32| -> ArrayRef {
        Arc::new(days.iter().map(f).collect::<Int32Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        int(&|d| d.year() * 10_000 + d.month() as i32 * 100 + d.day() as i32),
        Arc::new(Date32Array::from(
            (first..=last).map(|d| d as i32).collect::<Vec<_>>(),
        )),
        int(&|d| d.year()),
        int(&|d| d.month0() as i32 / 3 + 1),
        int(&|d| d.month() as i32),
        Arc::new(
            days.iter()
                .map(|d| Some(d.format("%B").to_string()))
                .collect::<StringArray>(),
        ),
        int(&|d| d.iso_week().year()),
        int(&|d| d.iso_week().week() as i32),
        int(&|d| d.day() as i32),
        int(&|d| d.weekday().number_from_monday() as i32),
        Arc::new(
            days.iter()
                .map(|d| Some(d.format("%A").to_string()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            days.iter()
                .map(|d| Some(matches!(d.weekday(), Weekday::Sat | Weekday::Sun)))
                .collect::<BooleanArray>(),
        ),
    ];
    RecordBatch::try_new(DIM_DATE_SPEC.schema(), columns).map_err(|e| Error::arrow(DIM_DATE, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_has_iso_weeks_and_weekends() {
        // 2026-01-01 (Thursday) is day 20454; 2025-12-29 starts ISO week 1 of 2026.
        let b = calendar(20_451, 20_457).unwrap();
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        assert_eq!(
            col(0),
            vec![
                20251229, 20251230, 20251231, 20260101, 20260102, 20260103, 20260104
            ]
        );
        assert_eq!(col(6), vec![2026; 7]);
        assert_eq!(col(7), vec![1; 7]);
        assert_eq!(col(3), vec![4, 4, 4, 1, 1, 1, 1]);
        let weekend = b
            .column(11)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert_eq!(
            weekend.iter().collect::<Vec<_>>(),
            [false, false, false, false, false, true, true]
                .map(Some)
                .to_vec()
        );
    }
}
