//! `gold/fact_census_hourly` (contract §5): per hour and department, the census at the start
//! of the hour, the bed capacity of the department version effective then, the occupancy
//! rate, the occupied bed-hours within the hour, and the admissions and discharges in it.

mod monthly;
mod segments;
mod spill;
mod update;

pub(crate) use monthly::{MonthlyCensus, whole_months};
pub(crate) use segments::{changed_days, read_occupancies};
pub(crate) use update::CensusUpdate;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use super::departments::Departments;
use super::{DAY, HOUR, date_key};
use crate::error::{Error, Result};
use crate::tables::{FACT_CENSUS_HOURLY, FACT_CENSUS_HOURLY_SPEC};

/// A stay's time in one department, as the census sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Occupancy {
    pub(crate) hospital_id: i32,
    pub(crate) department: String,
    pub(crate) start: i64,
    pub(crate) end: Option<i64>,
    pub(crate) starts_stay: bool,
    pub(crate) ends_stay: bool,
    /// When the stay went stale in this segment (contract §5.1): it leaves the census then.
    pub(crate) stale_since: Option<i64>,
}

impl Occupancy {
    /// The recorded end, once `as_of` has passed it (a flat record's planned discharge after
    /// the as-of time is not a discharge yet).
    fn discharge(&self, as_of: i64) -> Option<i64> {
        self.end.filter(|e| *e <= as_of)
    }

    /// When the segment leaves the census as of `as_of`: at its recorded end, or when it went
    /// stale (contract §5.1: without being discharged); `i64::MAX` while it stays.
    fn leaves(&self, as_of: i64) -> i64 {
        self.discharge(as_of)
            .or(self.stale_since)
            .unwrap_or(i64::MAX)
    }

    /// The last day (days since the epoch, up to the as-of day) the segment counts in.
    fn last_day(&self, as_of: i64) -> i64 {
        self.leaves(as_of)
            .div_euclid(DAY)
            .min(as_of.div_euclid(DAY))
    }
}

/// Each department's position in [`Departments::keys`].
fn department_index(departments: &Departments) -> HashMap<(i32, &str), usize> {
    departments
        .keys()
        .enumerate()
        .map(|(i, (h, d))| ((*h, d.as_str()), i))
        .collect()
}

/// Census accumulators for every hour of the days `lo..hi` (up to the as-of hour) and every
/// department.
#[derive(Debug)]
struct Grid<'a> {
    lo: i64,
    hi: i64,
    hours: usize,
    as_of: i64,
    departments: &'a Departments,
    keys: Vec<&'a (i32, String)>,
    index: HashMap<(i32, &'a str), usize>,
    census: Vec<i32>,
    /// Occupied time in microseconds: integer sums do not depend on the order of the segments.
    occupied: Vec<i64>,
    admissions: Vec<i32>,
    discharges: Vec<i32>,
}

impl<'a> Grid<'a> {
    fn new(first_day: i64, end_day: i64, as_of: i64, departments: &'a Departments) -> Self {
        let lo = first_day * DAY;
        let hi = (end_day * DAY).min(as_of.div_euclid(HOUR) * HOUR + HOUR);
        let hours = usize::try_from((hi - lo).max(0) / HOUR).unwrap_or(0);
        let keys: Vec<&(i32, String)> = departments.keys().collect();
        let cells = keys.len() * hours;
        Self {
            lo,
            hi,
            hours,
            as_of,
            departments,
            keys,
            index: department_index(departments),
            census: vec![0; cells],
            occupied: vec![0; cells],
            admissions: vec![0; cells],
            discharges: vec![0; cells],
        }
    }

    /// Counts a segment; false when its department has no version (it cannot be placed).
    fn add(&mut self, o: &Occupancy) -> bool {
        let Some(&d) = self.index.get(&(o.hospital_id, o.department.as_str())) else {
            return false;
        };
        self.add_placed(d, o);
        true
    }

    /// Counts a segment of the department at position `d` of [`Departments::keys`] (its own
    /// `department` is not read).
    fn add_placed(&mut self, d: usize, o: &Occupancy) {
        let (lo, hi, hours) = (self.lo, self.hi, self.hours);
        let row = d * hours;
        let hour_of = |t: i64| usize::try_from((t - lo) / HOUR).ok().filter(|h| *h < hours);
        let (discharge, end) = (o.discharge(self.as_of), o.leaves(self.as_of));
        if o.starts_stay
            && o.start >= lo
            && let Some(h) = hour_of(o.start)
        {
            self.admissions[row + h] += 1;
        }
        if o.ends_stay
            && let Some(end) = discharge
            && end >= lo
            && let Some(h) = hour_of(end)
        {
            self.discharges[row + h] += 1;
        }
        let (s, e) = (o.start.max(lo), end.min(hi));
        if s >= e {
            return;
        }
        let first_hour = (s - lo) / HOUR;
        let last_hour = (e - lo - 1) / HOUR;
        for h in first_hour..=last_hour {
            let start = lo + h * HOUR;
            let cell = row + h as usize;
            if o.start <= start && start < end {
                self.census[cell] += 1;
            }
            self.occupied[cell] += e.min(start + HOUR) - s.max(start);
        }
    }

    /// The rows of the hours of `days`.
    fn finish(self, days: &BTreeSet<i64>) -> Result<RecordBatch> {
        let mut out = Rows::default();
        for h in 0..self.hours {
            let start = self.lo + h as i64 * HOUR;
            if !days.contains(&start.div_euclid(DAY)) {
                continue;
            }
            for (d, (hospital_id, department)) in self.keys.iter().enumerate() {
                let Some(version) = self.departments.at(*hospital_id, department, start) else {
                    continue;
                };
                let cell = d * self.hours + h;
                out.push(
                    start,
                    version.sk,
                    *hospital_id,
                    department,
                    version.bed_capacity,
                    CellValues {
                        census: self.census[cell],
                        occupied: self.occupied[cell] as f64 / HOUR as f64,
                        admissions: self.admissions[cell],
                        discharges: self.discharges[cell],
                    },
                );
            }
        }
        out.finish()
    }
}

struct CellValues {
    census: i32,
    occupied: f64,
    admissions: i32,
    discharges: i32,
}

#[derive(Default)]
struct Rows {
    hour_start: Vec<i64>,
    date_key: Vec<i32>,
    hour: Vec<i32>,
    department_sk: Vec<i64>,
    hospital_id: Vec<i32>,
    department: Vec<String>,
    census: Vec<i32>,
    capacity: Vec<i32>,
    occupancy: Vec<f64>,
    occupied: Vec<f64>,
    admissions: Vec<i32>,
    discharges: Vec<i32>,
    month_key: Vec<i32>,
}

impl Rows {
    fn push(
        &mut self,
        start: i64,
        sk: i64,
        hospital_id: i32,
        department: &str,
        capacity: i32,
        v: CellValues,
    ) {
        let key = date_key(start);
        self.hour_start.push(start);
        self.date_key.push(key);
        self.hour.push(((start.rem_euclid(DAY)) / HOUR) as i32);
        self.department_sk.push(sk);
        self.hospital_id.push(hospital_id);
        self.department.push(department.to_string());
        self.census.push(v.census);
        self.capacity.push(capacity);
        self.occupancy.push(if capacity > 0 {
            f64::from(v.census) / f64::from(capacity)
        } else {
            0.0
        });
        self.occupied.push(v.occupied);
        self.admissions.push(v.admissions);
        self.discharges.push(v.discharges);
        self.month_key.push(key / 100);
    }

    fn finish(self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(self.hour_start).with_timezone("UTC")),
            Arc::new(Int32Array::from(self.date_key)),
            Arc::new(Int32Array::from(self.hour)),
            Arc::new(Int64Array::from(self.department_sk)),
            Arc::new(Int32Array::from(self.hospital_id)),
            Arc::new(StringArray::from(self.department)),
            Arc::new(Int32Array::from(self.census)),
            Arc::new(Int32Array::from(self.capacity)),
            Arc::new(Float64Array::from(self.occupancy)),
            Arc::new(Float64Array::from(self.occupied)),
            Arc::new(Int32Array::from(self.admissions)),
            Arc::new(Int32Array::from(self.discharges)),
            Arc::new(Int32Array::from(self.month_key)),
        ];
        RecordBatch::try_new(FACT_CENSUS_HOURLY_SPEC.schema(), columns)
            .map_err(|e| Error::arrow(FACT_CENSUS_HOURLY, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::DepartmentRow;
    use deltalake::arrow::array::Array;

    /// Census rows for the given days (days since the epoch), up to the hour containing `as_of`.
    /// `occupancies` must include every segment overlapping those days. Returns the rows and the
    /// number of segments whose department has no version (they cannot be placed).
    fn census(
        days: &BTreeSet<i64>,
        as_of: i64,
        departments: &Departments,
        occupancies: &[Occupancy],
    ) -> Result<(RecordBatch, usize)> {
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return Ok((RecordBatch::new_empty(FACT_CENSUS_HOURLY_SPEC.schema()), 0));
        };
        let mut grid = Grid::new(*first, last + 1, as_of, departments);
        let unplaced = occupancies.iter().filter(|o| !grid.add(o)).count();
        Ok((grid.finish(days)?, unplaced))
    }

    fn departments() -> Departments {
        let row = |d: &str, cap| DepartmentRow {
            hospital_id: 1,
            hospital_name: "A".into(),
            department: d.into(),
            bed_capacity: cap,
            staff_count: 1,
            effective_from: "2026-01-01".parse().unwrap(),
            aliases: None,
            warn_after_hours: None,
            stale_after_hours: None,
        };
        Departments::from_rows(&[row("ICU", 4), row("Surgery", 2)], &Default::default())
    }

    #[test]
    fn census_counts_stays_at_the_hour_start_and_follows_transfers() {
        let day = 20_000i64;
        let t = |h: i64, m: i64| day * DAY + h * HOUR + m * 60_000_000;
        let occ = |d: &str, s, e, starts, ends| Occupancy {
            hospital_id: 1,
            department: String::from(d),
            start: s,
            end: e,
            starts_stay: starts,
            ends_stay: ends,
            stale_since: None,
        };
        // Admitted to Surgery 01:30, transferred to ICU 03:00, discharged 04:15.
        let segments = [
            occ("Surgery", t(1, 30), Some(t(3, 0)), true, false),
            occ("ICU", t(3, 0), Some(t(4, 15)), false, true),
        ];
        let days = BTreeSet::from([day]);
        let (batch, unplaced) = census(&days, t(5, 10), &departments(), &segments).unwrap();
        assert_eq!(unplaced, 0);
        // Hours 00..=05 for two departments.
        assert_eq!(batch.num_rows(), 12);
        let dept = batch
            .column(5)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let census = batch
            .column(6)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        let occupied = batch
            .column(9)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let adm = batch
            .column(10)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        let dis = batch
            .column(11)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        let get = |hour: usize, d: &str| {
            let i = (0..batch.num_rows())
                .find(|i| i / 2 == hour && dept.value(*i) == d)
                .unwrap();
            (
                census.value(i),
                occupied.value(i),
                adm.value(i),
                dis.value(i),
            )
        };
        assert_eq!(get(1, "Surgery"), (0, 0.5, 1, 0));
        assert_eq!(get(2, "Surgery"), (1, 1.0, 0, 0));
        assert_eq!(get(3, "Surgery"), (0, 0.0, 0, 0));
        assert_eq!(get(3, "ICU"), (1, 1.0, 0, 0));
        assert_eq!(get(4, "ICU"), (1, 0.25, 0, 1));
        assert_eq!(get(5, "ICU"), (0, 0.0, 0, 0));
        assert!(batch.column(8).null_count() == 0);
    }
}
