//! `gold/fact_admission` and `gold/fact_stay_segment` rows from rebuilt stays.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};

use super::census::Occupancy;
use super::departments::Departments;
use super::patients::{PatientVersion, at};
use super::stays::Stay;
use super::{HOUR, date_key, month_key};
use crate::error::{Error, Result};
use crate::tables::{
    FACT_ADMISSION, FACT_ADMISSION_SPEC, FACT_STAY_SEGMENT, FACT_STAY_SEGMENT_SPEC, timestamp_array,
};

/// The department key of stays whose `(hospital, department)` has no reference version: the
/// dimension's "unknown member".
pub(crate) const UNKNOWN_DEPARTMENT_SK: i64 = -1;

/// A patient's stays with the versions they point to.
#[derive(Debug)]
pub(crate) struct PatientStays<'a> {
    pub(crate) patient_id: &'a str,
    pub(crate) versions: &'a [PatientVersion],
    pub(crate) stays: &'a [Stay],
    /// Per stay, when it went stale as of the refresh ([`stale_since`]).
    pub(crate) stale: &'a [Option<i64>],
}

/// Column builders for `gold/fact_admission`.
#[derive(Debug, Default)]
pub(crate) struct Admissions {
    stay_key: Vec<String>,
    record_kind: Vec<&'static str>,
    encounter_id: Vec<Option<String>>,
    patient_id: Vec<String>,
    patient_sk: Vec<i64>,
    hospital_id: Vec<i32>,
    department_sk: Vec<i64>,
    department: Vec<String>,
    discharge_department: Vec<String>,
    bed_id: Vec<Option<i64>>,
    admission_time: Vec<Option<i64>>,
    discharge_time: Vec<Option<i64>>,
    admission_date_key: Vec<i32>,
    discharge_date_key: Vec<Option<i32>>,
    los_hours: Vec<Option<f64>>,
    current: Vec<bool>,
    age: Vec<Option<i32>>,
    arrival: Vec<Option<i64>>,
    ed_wait: Vec<Option<f64>>,
    corrected: Vec<bool>,
    transfers: Vec<i32>,
    last_event: Vec<Option<i64>>,
    stale_since: Vec<Option<i64>>,
    admission_month: Vec<i32>,
    /// Stays whose department has no version in the reference data.
    pub(crate) unknown_departments: usize,
    /// Stays open but stale at the as-of time.
    pub(crate) stale: usize,
}

/// Column builders for `gold/fact_stay_segment`.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    stay_key: Vec<String>,
    segment_no: Vec<i32>,
    patient_id: Vec<String>,
    hospital_id: Vec<i32>,
    department: Vec<String>,
    department_sk: Vec<i64>,
    bed_id: Vec<Option<i64>>,
    start: Vec<Option<i64>>,
    end: Vec<Option<i64>>,
    starts_stay: Vec<bool>,
    ends_stay: Vec<bool>,
    hours: Vec<Option<f64>>,
    stale_since: Vec<Option<i64>>,
    admission_month: Vec<i32>,
    /// The same segments as the census reads them.
    pub(crate) occupancies: Vec<Occupancy>,
}

/// When a stay open at `as_of` goes stale unless a record of it arrives (contract §5.1):
/// `last event + stale_after` of its current department, which may be before `as_of` or after
/// it; `None` for a stay discharged by then.
pub(crate) fn goes_stale(stay: &Stay, departments: &Departments, as_of: i64) -> Option<i64> {
    if stay.discharge_time.is_some_and(|d| d <= as_of) {
        return None;
    }
    let current = &stay.segments.last()?.department;
    Some(stay.last_event + departments.limits(stay.hospital_id, current).stale_after())
}

impl Admissions {
    /// Adds a patient's stays as of `as_of`.
    pub(crate) fn push(
        &mut self,
        p: &PatientStays<'_>,
        departments: &Departments,
        as_of: i64,
    ) -> Result<()> {
        for (i, stay) in p.stays.iter().enumerate() {
            let (Some(first), Some(last)) = (stay.segments.first(), stay.segments.last()) else {
                continue;
            };
            let version = at(p.versions, stay.admission_time).ok_or_else(|| {
                Error::Internal(format!(
                    "patient {} has a stay but no version",
                    p.patient_id
                ))
            })?;
            let department_sk =
                match departments.at(stay.hospital_id, &first.department, stay.admission_time) {
                    Some(v) => v.sk,
                    None => {
                        self.unknown_departments += 1;
                        UNKNOWN_DEPARTMENT_SK
                    }
                };
            let discharge = stay.discharge_time.filter(|d| *d <= as_of);
            let stale = p.stale[i];
            self.stale += usize::from(stale.is_some());
            self.stay_key.push(stay.stay_key.clone());
            self.record_kind.push(stay.record_kind);
            self.encounter_id.push(stay.encounter_id.clone());
            self.patient_id.push(p.patient_id.to_string());
            self.patient_sk.push(version.sk);
            self.hospital_id.push(stay.hospital_id);
            self.department_sk.push(department_sk);
            self.department.push(first.department.clone());
            self.discharge_department.push(last.department.clone());
            self.bed_id.push(first.bed_id);
            self.admission_time.push(Some(stay.admission_time));
            self.discharge_time.push(discharge);
            let admission_key = date_key(stay.admission_time);
            self.admission_date_key.push(admission_key);
            self.discharge_date_key.push(discharge.map(date_key));
            self.los_hours
                .push(discharge.map(|d| (d - stay.admission_time) as f64 / HOUR as f64));
            self.current.push(discharge.is_none() && stale.is_none());
            self.age.push(stay.age);
            self.arrival.push(stay.arrival_time);
            self.ed_wait.push(
                stay.arrival_time
                    .map(|a| (stay.admission_time - a) as f64 / 60_000_000.0),
            );
            self.corrected.push(stay.corrected);
            self.transfers.push(stay.segments.len() as i32 - 1);
            self.last_event.push(Some(stay.last_event));
            self.stale_since.push(stale);
            self.admission_month.push(month_key(stay.admission_time));
        }
        Ok(())
    }

    /// The rows, stamped with the as-of time.
    pub(crate) fn finish(self, as_of: i64) -> Result<RecordBatch> {
        let n = self.stay_key.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.stay_key)),
            Arc::new(StringArray::from(self.record_kind)),
            Arc::new(StringArray::from(self.encounter_id)),
            Arc::new(StringArray::from(self.patient_id)),
            Arc::new(Int64Array::from(self.patient_sk)),
            Arc::new(Int32Array::from(self.hospital_id)),
            Arc::new(Int64Array::from(self.department_sk)),
            Arc::new(StringArray::from(self.department)),
            Arc::new(StringArray::from(self.discharge_department)),
            Arc::new(Int64Array::from(self.bed_id)),
            timestamp_array(self.admission_time),
            timestamp_array(self.discharge_time),
            Arc::new(Int32Array::from(self.admission_date_key)),
            Arc::new(Int32Array::from(self.discharge_date_key)),
            Arc::new(Float64Array::from(self.los_hours)),
            Arc::new(BooleanArray::from(self.current)),
            Arc::new(Int32Array::from(self.age)),
            timestamp_array(self.arrival),
            Arc::new(Float64Array::from(self.ed_wait)),
            Arc::new(BooleanArray::from(self.corrected)),
            Arc::new(Int32Array::from(self.transfers)),
            timestamp_array(self.last_event),
            timestamp_array(self.stale_since),
            timestamp_array(vec![Some(as_of); n]),
            Arc::new(Int32Array::from(self.admission_month)),
        ];
        RecordBatch::try_new(FACT_ADMISSION_SPEC.schema(), columns)
            .map_err(|e| Error::arrow(FACT_ADMISSION, e))
    }
}

impl Segments {
    /// Adds a patient's stays' segments as of `as_of`.
    pub(crate) fn push(&mut self, p: &PatientStays<'_>, departments: &Departments, as_of: i64) {
        for (stay, stale) in p.stays.iter().zip(p.stale) {
            let n = stay.segments.len();
            for (i, s) in stay.segments.iter().enumerate() {
                let last = i + 1 == n;
                let occupancy = Occupancy {
                    hospital_id: stay.hospital_id,
                    department: s.department.clone(),
                    start: s.start,
                    end: s.end,
                    starts_stay: i == 0,
                    ends_stay: last && s.end.is_some(),
                    stale_since: stale.filter(|_| last),
                };
                self.stay_key.push(stay.stay_key.clone());
                self.segment_no.push(i as i32);
                self.patient_id.push(p.patient_id.to_string());
                self.hospital_id.push(stay.hospital_id);
                self.department.push(s.department.clone());
                self.department_sk.push(
                    departments
                        .at(stay.hospital_id, &s.department, s.start)
                        .map_or(UNKNOWN_DEPARTMENT_SK, |v| v.sk),
                );
                self.bed_id.push(s.bed_id);
                self.start.push(Some(s.start));
                self.end.push(s.end);
                self.starts_stay.push(occupancy.starts_stay);
                self.ends_stay.push(occupancy.ends_stay);
                self.hours.push(
                    s.end
                        .filter(|e| *e <= as_of)
                        .map(|e| (e - s.start) as f64 / HOUR as f64),
                );
                self.stale_since.push(occupancy.stale_since);
                self.admission_month.push(month_key(stay.admission_time));
                self.occupancies.push(occupancy);
            }
        }
    }

    /// The rows; the occupancies stay behind for the census.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(std::mem::take(&mut self.stay_key))),
            Arc::new(Int32Array::from(std::mem::take(&mut self.segment_no))),
            Arc::new(StringArray::from(std::mem::take(&mut self.patient_id))),
            Arc::new(Int32Array::from(std::mem::take(&mut self.hospital_id))),
            Arc::new(StringArray::from(std::mem::take(&mut self.department))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.department_sk))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.bed_id))),
            timestamp_array(std::mem::take(&mut self.start)),
            timestamp_array(std::mem::take(&mut self.end)),
            Arc::new(BooleanArray::from(std::mem::take(&mut self.starts_stay))),
            Arc::new(BooleanArray::from(std::mem::take(&mut self.ends_stay))),
            Arc::new(Float64Array::from(std::mem::take(&mut self.hours))),
            timestamp_array(std::mem::take(&mut self.stale_since)),
            Arc::new(Int32Array::from(std::mem::take(&mut self.admission_month))),
        ];
        RecordBatch::try_new(FACT_STAY_SEGMENT_SPEC.schema(), columns)
            .map_err(|e| Error::arrow(FACT_STAY_SEGMENT, e))
    }
}
