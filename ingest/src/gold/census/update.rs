//! An incremental refresh's census, from the rows the table holds rather than from every
//! segment overlapping the months it rewrites: the held rows, less what the rebuilt patients'
//! segments counted in them, plus what their segments count now. The hours the as-of time has
//! moved over carry the other patients' stays open at the old as-of hour, counted from the
//! held census, and the few of their segments that start or end after it (read, not counted).
//!
//! This equals a recount from every segment because a segment of a patient not rebuilt counts
//! the same at both as-of times: the refresh rebuilds every patient whose recorded end or
//! staleness the as-of time has passed (`gold/due.rs`).

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Float64Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::datafusion::prelude::{col, lit};

use super::{Grid, Occupancy, read_occupancies};
use crate::error::Result;
use crate::gold::departments::Departments;
use crate::gold::{DAY, HOUR, lit_ts, month_key};
use crate::storage::{Keys, column, scan};
use crate::tables::{FACT_CENSUS_HOURLY, FACT_CENSUS_HOURLY_SPEC};

/// What an incremental census is computed from.
#[derive(Debug)]
pub(crate) struct CensusUpdate<'a> {
    /// The days to write (whole months).
    pub(crate) days: &'a BTreeSet<i64>,
    pub(crate) as_of: i64,
    /// The as-of time the census table was computed at (not after `as_of`).
    pub(crate) held_as_of: i64,
    pub(crate) departments: &'a Departments,
    /// The rebuilt patients' segments as the census table counted them.
    pub(crate) old: &'a [Occupancy],
    /// The rebuilt patients' segments now.
    pub(crate) new: &'a [Occupancy],
}

impl CensusUpdate<'_> {
    /// The census rows of the days, reading the held rows from `census` and the other
    /// patients' (not `rebuilt`) segments moving after the held as-of hour from `segments`.
    /// Returns the rows and the number of rebuilt segments whose department has no version.
    pub(crate) async fn run(
        &self,
        census: &DeltaTable,
        segments: &DeltaTable,
        rebuilt: &BTreeSet<String>,
    ) -> Result<(RecordBatch, usize)> {
        let (Some(first), Some(last)) = (self.days.first(), self.days.last()) else {
            return Ok((RecordBatch::new_empty(FACT_CENSUS_HOURLY_SPEC.schema()), 0));
        };
        let held_hour = self.held_as_of.div_euclid(HOUR) * HOUR;
        let months: BTreeSet<i32> = self.days.iter().map(|d| month_key(d * DAY)).collect();
        let held = scan(
            census,
            FACT_CENSUS_HOURLY,
            &[
                "hour_start",
                "hospital_id",
                "department",
                "census",
                "occupied_bed_hours",
                "admissions",
                "discharges",
            ],
            col("month_key")
                .in_list(months.iter().map(|m| lit(*m)).collect(), false)
                .and(col("hour_start").lt_eq(lit_ts(held_hour))),
            &[],
        )
        .await?;
        let moving = col("segment_start")
            .gt(lit_ts(held_hour))
            .or(col("segment_end").gt(lit_ts(held_hour)))
            .or(col("stale_since").gt(lit_ts(held_hour)));
        let others = Keys {
            column: "patient_id",
            values: rebuilt,
            keep: false,
        };
        let moving = read_occupancies(segments, moving, Some(others)).await?;

        let mut grid = Grid::new(*first, last + 1, self.as_of, self.departments);
        grid.load(&held)?;
        let mut counted = Grid::new(*first, last + 1, self.held_as_of, self.departments);
        for o in self.old {
            counted.add(o);
        }
        grid.subtract(&counted);
        grid.carry(held_hour, &moving);
        let unplaced = self.new.iter().filter(|o| !grid.add(o)).count();
        Ok((grid.finish(self.days)?, unplaced))
    }
}

impl Grid<'_> {
    /// Adds the census rows `held` (the table's own rows of these hours).
    fn load(&mut self, held: &[RecordBatch]) -> Result<()> {
        let t = FACT_CENSUS_HOURLY;
        for b in held {
            let hour = column::<TimestampMicrosecondArray>(b, t, "hour_start")?;
            let hospital = column::<Int32Array>(b, t, "hospital_id")?;
            let department = column::<StringArray>(b, t, "department")?;
            let census = column::<Int32Array>(b, t, "census")?;
            let occupied = column::<Float64Array>(b, t, "occupied_bed_hours")?;
            let admissions = column::<Int32Array>(b, t, "admissions")?;
            let discharges = column::<Int32Array>(b, t, "discharges")?;
            for i in 0..b.num_rows() {
                let Some(cell) = self.cell(hospital.value(i), department.value(i), hour.value(i))
                else {
                    continue;
                };
                self.census[cell] += census.value(i);
                // Stored in hours from whole microseconds: the product rounds back exactly.
                self.occupied[cell] += (occupied.value(i) * HOUR as f64).round() as i64;
                self.admissions[cell] += admissions.value(i);
                self.discharges[cell] += discharges.value(i);
            }
        }
        Ok(())
    }

    /// Subtracts the counts of `other`, a grid over the same days (up to an earlier as-of hour).
    fn subtract(&mut self, other: &Grid<'_>) {
        for d in 0..self.keys.len() {
            for h in 0..other.hours.min(self.hours) {
                let (cell, theirs) = (d * self.hours + h, d * other.hours + h);
                self.census[cell] -= other.census[theirs];
                self.occupied[cell] -= other.occupied[theirs];
                self.admissions[cell] -= other.admissions[theirs];
                self.discharges[cell] -= other.discharges[theirs];
            }
        }
    }

    /// Counts, in the hours after the one starting at `held_hour`, the stays of patients not
    /// rebuilt: those open at `held_hour` by its census in the grid (held rows less the rebuilt
    /// patients' old counts), except the `moving` ones (every such segment starting or ending
    /// after `held_hour`), which are counted from their times.
    fn carry(&mut self, held_hour: i64, moving: &[Occupancy]) {
        let next = held_hour + HOUR;
        let Some(from) = usize::try_from((next - self.lo) / HOUR)
            .ok()
            .filter(|from| (1..=self.hours).contains(from))
        else {
            return;
        };
        let open_at = |o: &Occupancy, t: i64, as_of| o.start <= t && t < o.leaves(as_of);
        let mut open: Vec<i32> = (0..self.keys.len())
            .map(|d| {
                self.census
                    .get(d * self.hours + from - 1)
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        for o in moving {
            if let Some(d) = self.index.get(&(o.hospital_id, o.department.as_str())) {
                open[*d] -= i32::from(open_at(o, held_hour, self.as_of));
            }
            if o.leaves(self.as_of) >= next {
                self.add(&Occupancy {
                    start: o.start.max(next),
                    starts_stay: o.starts_stay && o.start >= next,
                    ..o.clone()
                });
            }
        }
        for (d, count) in open.into_iter().enumerate() {
            for h in from..self.hours {
                let cell = d * self.hours + h;
                self.census[cell] += count;
                self.occupied[cell] += i64::from(count) * HOUR;
            }
        }
    }

    /// The cell of a department's hour, if the grid has it.
    fn cell(&self, hospital_id: i32, department: &str, hour_start: i64) -> Option<usize> {
        let d = *self.index.get(&(hospital_id, department))?;
        let h = usize::try_from((hour_start - self.lo) / HOUR)
            .ok()
            .filter(|h| *h < self.hours && hour_start >= self.lo)?;
        Some(d * self.hours + h)
    }
}
