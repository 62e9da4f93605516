//! The gold rows of a set of patients, rebuilt from their whole silver history: the same
//! work for a full build's slice and for an incremental refresh's affected patients.

use deltalake::arrow::array::RecordBatch;

use super::departments::Departments;
use super::ed_visits::EdVisits;
use super::facts::{self, Admissions, PatientStays, Segments};
use super::history::History;
use super::patients::{self, PatientVersion};
use super::stays;
use super::{GoldMetrics, earliest};
use crate::error::Result;

/// The rows of the patients rebuilt.
#[derive(Debug, Default)]
pub(super) struct Rebuilt {
    pub(super) admissions: Admissions,
    pub(super) segments: Segments,
    pub(super) ed_visits: EdVisits,
    pub(super) versions: Vec<PatientVersion>,
    /// The earliest time one of the stays open and not stale at the as-of time goes stale.
    pub(super) next_stale: Option<i64>,
}

/// Rebuilds every patient of `history`, counting what was rebuilt into `metrics`.
pub(super) fn rebuild(
    history: &History,
    departments: &Departments,
    as_of: i64,
    metrics: &mut GoldMetrics,
) -> Result<Rebuilt> {
    let mut out = Rebuilt::default();
    for (patient_id, observations) in history {
        let versions = patients::versions(patient_id, observations);
        let rebuilt = stays::stays(patient_id, observations);
        metrics.waiting_encounters += rebuilt.waiting;
        metrics.stays += rebuilt.stays.len();
        metrics.ed_visits += rebuilt.ed_visits.len();
        let goes_stale = rebuilt
            .stays
            .iter()
            .map(|s| facts::goes_stale(s, departments, as_of));
        let mut stale = Vec::with_capacity(rebuilt.stays.len());
        for t in goes_stale {
            stale.push(t.filter(|t| *t <= as_of));
            out.next_stale = earliest(out.next_stale, t.filter(|t| *t > as_of));
        }
        let p = PatientStays {
            patient_id,
            versions: &versions,
            stays: &rebuilt.stays,
            stale: &stale,
        };
        out.admissions.push(&p, departments, as_of)?;
        out.segments.push(&p, departments, as_of);
        out.ed_visits.push(patient_id, &rebuilt.ed_visits, as_of);
        out.versions.extend(versions);
    }
    metrics.patients += history.len();
    metrics.patient_versions += out.versions.len();
    metrics.unknown_departments += out.admissions.unknown_departments;
    metrics.stale_stays += out.admissions.stale;
    Ok(out)
}

impl Rebuilt {
    /// The rows of each patient-keyed table, by table name.
    pub(super) fn finish(
        mut self,
        as_of: i64,
        tracked: &[String],
    ) -> Result<[(&'static str, RecordBatch); 4]> {
        use crate::tables::{DIM_PATIENT, FACT_ADMISSION, FACT_ED_VISIT, FACT_STAY_SEGMENT};
        Ok([
            (FACT_STAY_SEGMENT, self.segments.finish()?),
            (FACT_ADMISSION, self.admissions.finish(as_of)?),
            (FACT_ED_VISIT, self.ed_visits.finish(as_of)?),
            (
                DIM_PATIENT,
                patients::to_batch(self.versions.iter(), tracked)?,
            ),
        ])
    }
}
