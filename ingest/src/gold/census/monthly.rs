//! The census of whole months, accumulated segment by segment (the full build's census).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use deltalake::arrow::array::RecordBatch;

use super::spill::MonthFiles;
use super::{Grid, Occupancy, department_index};
use crate::error::Result;
use crate::gold::departments::Departments;
use crate::gold::{DAY, month_key};

/// The census of every month from the first segment's to the as-of time's, accumulated
/// segment by segment: segments can be added in any order and in as many pieces as the work
/// is sliced into, and the result is the same. The segments wait on disk by month, and each
/// month is counted when its rows are asked for, so memory holds one month's accumulators.
#[derive(Debug)]
pub(crate) struct MonthlyCensus<'a> {
    as_of: i64,
    departments: &'a Departments,
    /// The segments by the first day of each month they count in (days since the epoch).
    months: MonthFiles,
    /// The first day of the earliest of those months.
    first: Option<i64>,
    index: HashMap<(i32, &'a str), usize>,
    unplaced: usize,
}

impl<'a> MonthlyCensus<'a> {
    /// An empty census, keeping its segments in a folder of `scratch`.
    pub(crate) fn new(as_of: i64, departments: &'a Departments, scratch: &Path) -> Result<Self> {
        Ok(Self {
            as_of,
            departments,
            months: MonthFiles::new(scratch)?,
            first: None,
            index: department_index(departments),
            unplaced: 0,
        })
    }

    /// Counts a segment in every month it touches (up to the as-of time's).
    pub(crate) fn add(&mut self, o: &Occupancy) -> Result<()> {
        let Some(&d) = self.index.get(&(o.hospital_id, o.department.as_str())) else {
            self.unplaced += 1;
            return Ok(());
        };
        let last = o.last_day(self.as_of);
        let mut month = month_start(o.start.div_euclid(DAY));
        if month <= last {
            self.first = Some(self.first.map_or(month, |f| f.min(month)));
        }
        while month <= last {
            self.months.push(month, d, o)?;
            month = next_month(month);
        }
        Ok(())
    }

    /// Segments whose department has no version.
    pub(crate) fn unplaced(&self) -> usize {
        self.unplaced
    }

    /// Every day of the census: whole months from the first segment's to the as-of day.
    pub(crate) fn days(&self) -> BTreeSet<i64> {
        let as_of_day = self.as_of.div_euclid(DAY);
        match self.first {
            Some(first) => whole_months(first..=as_of_day, as_of_day),
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
            let mut grid = Grid::new(start, next, as_of, departments);
            let counted = self.months.take(start).map(|segments| {
                for (d, o) in &segments {
                    grid.add_placed(*d, o);
                }
            });
            Some(counted.and_then(|()| grid.finish(&days)))
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
