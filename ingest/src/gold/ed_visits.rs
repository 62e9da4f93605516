//! `gold/fact_ed_visit` rows (contract §5.1): one per encounter with an `ARRIVAL`, with its
//! outcome as of the refresh.

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};

use super::stays::EdVisit;
use super::{DAY, month_key};
use crate::error::{Error, Result};
use crate::tables::{FACT_ED_VISIT, FACT_ED_VISIT_SPEC, timestamp_array};

const MINUTE: f64 = 60_000_000.0;

/// What became of an emergency-department encounter, as of a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An `ADMIT` within 24 h of the arrival.
    Admitted,
    /// Neither admitted nor left yet.
    Waiting,
    /// No `ADMIT` within 24 h of the arrival, and the 24 h have passed or a `DISCHARGE`
    /// closed the encounter.
    LeftWithoutAdmission,
}

impl Outcome {
    /// The outcome of `v` as of `as_of`, and its wait in minutes.
    fn of(v: &EdVisit, as_of: i64) -> (Self, Option<f64>) {
        let minutes = |t: i64| Some((t - v.arrival_time) as f64 / MINUTE);
        let deadline = v.arrival_time + DAY;
        match (v.admission_time, v.discharge_time) {
            (Some(a), _) if a <= as_of && a <= deadline => (Self::Admitted, minutes(a)),
            (_, Some(d)) if d <= as_of && d <= deadline => (Self::LeftWithoutAdmission, minutes(d)),
            _ if deadline <= as_of => (
                Self::LeftWithoutAdmission,
                v.admission_time.or(v.discharge_time).and_then(minutes),
            ),
            _ => (Self::Waiting, minutes(as_of)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Waiting => "waiting",
            Self::LeftWithoutAdmission => "left_without_admission",
        }
    }
}

/// Column builders for `gold/fact_ed_visit`.
#[derive(Debug, Default)]
pub(crate) struct EdVisits {
    encounter_id: Vec<String>,
    patient_id: Vec<String>,
    hospital_id: Vec<i32>,
    department: Vec<String>,
    arrival: Vec<Option<i64>>,
    admission: Vec<Option<i64>>,
    discharge: Vec<Option<i64>>,
    wait: Vec<Option<f64>>,
    outcome: Vec<&'static str>,
    arrival_month: Vec<i32>,
}

impl EdVisits {
    /// Adds a patient's visits as of `as_of`.
    pub(crate) fn push(&mut self, patient_id: &str, visits: &[EdVisit], as_of: i64) {
        for v in visits {
            let (outcome, wait) = Outcome::of(v, as_of);
            self.encounter_id.push(v.encounter_id.clone());
            self.patient_id.push(patient_id.to_string());
            self.hospital_id.push(v.hospital_id);
            self.department.push(v.department.clone());
            self.arrival.push(Some(v.arrival_time));
            self.admission.push(v.admission_time);
            self.discharge.push(v.discharge_time);
            self.wait.push(wait);
            self.outcome.push(outcome.name());
            self.arrival_month.push(month_key(v.arrival_time));
        }
    }

    /// The rows, stamped with the as-of time.
    pub(crate) fn finish(self, as_of: i64) -> Result<RecordBatch> {
        let n = self.encounter_id.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.encounter_id)),
            Arc::new(StringArray::from(self.patient_id)),
            Arc::new(Int32Array::from(self.hospital_id)),
            Arc::new(StringArray::from(self.department)),
            timestamp_array(self.arrival),
            timestamp_array(self.admission),
            timestamp_array(self.discharge),
            Arc::new(Float64Array::from(self.wait)),
            Arc::new(StringArray::from(self.outcome)),
            timestamp_array(vec![Some(as_of); n]),
            Arc::new(Int32Array::from(self.arrival_month)),
        ];
        RecordBatch::try_new(FACT_ED_VISIT_SPEC.schema(), columns)
            .map_err(|e| Error::arrow(FACT_ED_VISIT, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gold::HOUR;

    fn visit(admission: Option<i64>, discharge: Option<i64>) -> EdVisit {
        EdVisit {
            encounter_id: "e".into(),
            hospital_id: 1,
            department: "Emergency".into(),
            arrival_time: 0,
            admission_time: admission,
            discharge_time: discharge,
        }
    }

    #[test]
    fn outcomes_follow_the_24_hour_rule() {
        let at = |v: &EdVisit, t| Outcome::of(v, t);
        // Admitted after 90 minutes.
        assert_eq!(
            at(&visit(Some(90 * 60_000_000), None), 2 * HOUR),
            (Outcome::Admitted, Some(90.0))
        );
        // Admitted after the as-of time: still waiting then.
        assert_eq!(
            at(&visit(Some(3 * HOUR), None), 2 * HOUR),
            (Outcome::Waiting, Some(120.0))
        );
        // Only an arrival: waiting for 24 h, then left without admission.
        assert_eq!(at(&visit(None, None), DAY - 1).0, Outcome::Waiting);
        assert_eq!(
            at(&visit(None, None), DAY),
            (Outcome::LeftWithoutAdmission, None)
        );
        // Discharged from the emergency department without an admission.
        assert_eq!(
            at(&visit(None, Some(HOUR)), 2 * HOUR),
            (Outcome::LeftWithoutAdmission, Some(60.0))
        );
        // Admitted only after 24 h: no admission within 24 h.
        assert_eq!(
            at(&visit(Some(30 * HOUR), None), 40 * HOUR).0,
            Outcome::LeftWithoutAdmission
        );
    }
}
