//! The census of whole months, accumulated segment by segment (the full build's census).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use deltalake::arrow::array::RecordBatch;

use super::{Grid, Occupancy, department_index};
use crate::error::Result;
use crate::gold::departments::Departments;
use crate::gold::{DAY, month_key};

/// The census of every month from the first segment's to the as-of time's, accumulated
/// segment by segment: segments can be added in any order and in as many pieces as the work
/// is sliced into, and the result is the same.
#[derive(Debug)]
pub(crate) struct MonthlyCensus<'a> {
    as_of: i64,
    departments: &'a Departments,
    /// Each month's grid by the day it starts (days since the epoch).
    months: BTreeMap<i64, Grid<'a>>,
    index: HashMap<(i32, &'a str), usize>,
    unplaced: usize,
}

impl<'a> MonthlyCensus<'a> {
    pub(crate) fn new(as_of: i64, departments: &'a Departments) -> Self {
        Self {
            as_of,
            departments,
            months: BTreeMap::new(),
            index: department_index(departments),
            unplaced: 0,
        }
    }

    /// Counts a segment in every month it touches (up to the as-of time's).
    pub(crate) fn add(&mut self, o: &Occupancy) {
        if !self
            .index
            .contains_key(&(o.hospital_id, o.department.as_str()))
        {
            self.unplaced += 1;
            return;
        }
        let as_of_day = self.as_of.div_euclid(DAY);
        let last = o.leaves(self.as_of).div_euclid(DAY).min(as_of_day);
        let mut month = month_start(o.start.div_euclid(DAY));
        while month <= last {
            let next = next_month(month);
            self.months
                .entry(month)
                .or_insert_with(|| Grid::new(month, next, self.as_of, self.departments))
                .add(o);
            month = next;
        }
    }

    /// Segments whose department has no version.
    pub(crate) fn unplaced(&self) -> usize {
        self.unplaced
    }

    /// Every day of the census: whole months from the first segment's to the as-of day.
    pub(crate) fn days(&self) -> BTreeSet<i64> {
        let as_of_day = self.as_of.div_euclid(DAY);
        match self.months.keys().next() {
            Some(first) => whole_months(*first..=as_of_day, as_of_day),
            None => BTreeSet::new(),
        }
    }

    /// The rows, a month at a time (months no segment touched have rows of zeros).
    pub(crate) fn into_months(mut self) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
        let days = self.days();
        let (as_of, departments) = (self.as_of, self.departments);
        let mut month = days.first().copied();
        std::iter::from_fn(move || {
            let start = month?;
            let next = next_month(start);
            month = Some(next).filter(|m| days.contains(m));
            let grid = self
                .months
                .remove(&start)
                .unwrap_or_else(|| Grid::new(start, next, as_of, departments));
            Some(grid.finish(&days))
        })
    }
}

/// The first day of the month of `day` (days since the epoch).
fn month_start(day: i64) -> i64 {
    use chrono::Datelike;
    let date = chrono::DateTime::from_timestamp_micros(day * DAY)
        .unwrap_or_default()
        .date_naive();
    day - i64::from(date.day0())
}

/// The first day of the month after the one starting on `first`.
fn next_month(first: i64) -> i64 {
    let mut day = first + 28;
    while month_key(day * DAY) == month_key(first * DAY) {
        day += 1;
    }
    day
}

/// Every day of the months of `days`, up to `last` (days since the epoch).
pub(crate) fn whole_months(days: impl IntoIterator<Item = i64>, last: i64) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for day in days {
        if out.contains(&day) || day > last {
            continue;
        }
        out.extend(month_start(day)..next_month(month_start(day)).min(last + 1));
    }
    out
}
