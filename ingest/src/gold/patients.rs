//! `gold/dim_patient`: SCD type 2 over the tracked patient attributes, sequenced by event time.
//!
//! A patient's versions are rebuilt from all their records ordered by event time (then by
//! receipt), so a late record inserts its version into the past and never overwrites the
//! current one, and the same input always yields the same versions. A record that does not
//! state an attribute (NULL, or gender `Unknown`) keeps the value in force. Age is type 1:
//! every version carries the latest known age.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::history::Observation;
use super::{month_key, surrogate_key};
use crate::error::{Error, Result};
use crate::tables::{DIM_PATIENT, DIM_PATIENT_SPEC, attribute_column, timestamp_array};

const UNKNOWN_GENDER: &str = "Unknown";

/// One version of a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatientVersion {
    pub(crate) sk: i64,
    pub(crate) patient_id: String,
    pub(crate) gender: String,
    pub(crate) age: Option<i32>,
    pub(crate) attributes: Vec<Option<String>>,
    pub(crate) valid_from: i64,
    pub(crate) valid_to: Option<i64>,
}

/// The versions of one patient from their observations (any order).
pub(crate) fn versions(patient_id: &str, observations: &[Observation]) -> Vec<PatientVersion> {
    let mut ordered: Vec<&Observation> = observations.iter().collect();
    ordered.sort_by(|a, b| (a.time, &a.received).cmp(&(b.time, &b.received)));
    let age = ordered.iter().rev().find_map(|o| o.age);
    let mut out: Vec<PatientVersion> = Vec::new();
    for o in ordered {
        let (gender, attributes) = match out.last() {
            None => (o.gender.clone(), o.attributes.clone()),
            Some(cur) => (
                if o.gender == UNKNOWN_GENDER {
                    cur.gender.clone()
                } else {
                    o.gender.clone()
                },
                cur.attributes
                    .iter()
                    .zip(&o.attributes)
                    .map(|(old, new)| new.clone().or_else(|| old.clone()))
                    .collect(),
            ),
        };
        // A known gender replaces `Unknown` from the start rather than opening a version.
        let only_one = out.len() == 1;
        if let Some(cur) = out.last_mut() {
            if cur.gender == UNKNOWN_GENDER && only_one && cur.attributes == attributes {
                cur.gender = gender;
                continue;
            }
            if cur.gender == gender && cur.attributes == attributes {
                continue;
            }
            // Two records at the same instant: the one received later wins, in place.
            if cur.valid_from == o.time {
                cur.gender = gender;
                cur.attributes = attributes;
                continue;
            }
            cur.valid_to = Some(o.time);
        }
        out.push(PatientVersion {
            sk: surrogate_key(&[patient_id], o.time),
            patient_id: patient_id.to_string(),
            gender,
            age,
            attributes,
            valid_from: o.time,
            valid_to: None,
        });
    }
    out
}

/// The version in force at `t` (the first version before the patient was first seen).
pub(crate) fn at(versions: &[PatientVersion], t: i64) -> Option<&PatientVersion> {
    versions
        .iter()
        .rev()
        .find(|v| v.valid_from <= t)
        .or_else(|| versions.first())
}

/// `gold/dim_patient` rows, with one nullable text column per tracked attribute.
pub(crate) fn to_batch<'a>(
    rows: impl Iterator<Item = &'a PatientVersion>,
    tracked: &[String],
) -> Result<RecordBatch> {
    let rows: Vec<&PatientVersion> = rows.collect();
    let mut fields: Vec<Field> = DIM_PATIENT_SPEC
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(
        tracked
            .iter()
            .map(|a| Field::new(attribute_column(a), DataType::Utf8, true)),
    );
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|v| v.sk).collect::<Int64Array>()),
        Arc::new(
            rows.iter()
                .map(|v| Some(v.patient_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|v| Some(v.gender.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(rows.iter().map(|v| v.age).collect::<Int32Array>()),
        timestamp_array(rows.iter().map(|v| Some(v.valid_from)).collect()),
        timestamp_array(rows.iter().map(|v| v.valid_to).collect()),
        Arc::new(
            rows.iter()
                .map(|v| Some(v.valid_to.is_none()))
                .collect::<BooleanArray>(),
        ),
        Arc::new(first_seen_months(&rows)),
    ];
    for i in 0..tracked.len() {
        columns.push(Arc::new(
            rows.iter()
                .map(|v| v.attributes.get(i).cloned().flatten())
                .collect::<StringArray>(),
        ));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow(DIM_PATIENT, e))
}

/// Per version, `yyyymm` of its patient's first version: the patient's partition. A patient's
/// versions come together and in time order.
fn first_seen_months(rows: &[&PatientVersion]) -> Int32Array {
    let mut first: Option<(&str, i32)> = None;
    rows.iter()
        .map(|v| match first {
            Some((patient, month)) if patient == v.patient_id => Some(month),
            _ => {
                let month = month_key(v.valid_from);
                first = Some((&v.patient_id, month));
                Some(month)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gold::history::Kind;

    fn obs(time: i64, seq: i64, gender: &str, insurance: Option<&str>) -> Observation {
        Observation {
            received: (seq, "f".into(), 1),
            from_ehr: false,
            kind: Kind::Update,
            encounter_id: Some("e".into()),
            hospital_id: 1,
            department: "ICU".into(),
            bed_id: None,
            gender: gender.into(),
            age: Some(40 + seq as i32),
            time,
            received_at: time,
            discharge_time: None,
            corrected: false,
            attributes: vec![insurance.map(str::to_string)],
        }
    }

    fn shape(v: &[PatientVersion]) -> Vec<(String, Option<String>, i64, Option<i64>)> {
        v.iter()
            .map(|v| {
                (
                    v.gender.clone(),
                    v.attributes[0].clone(),
                    v.valid_from,
                    v.valid_to,
                )
            })
            .collect()
    }

    #[test]
    fn a_change_opens_a_version_and_no_change_none() {
        let v = versions(
            "p",
            &[
                obs(10, 1, "Female", None),
                obs(20, 2, "Female", None),
                obs(30, 3, "Female", Some("Private")),
                obs(40, 4, "Unknown", None),
            ],
        );
        assert_eq!(
            shape(&v),
            vec![
                ("Female".into(), None, 10, Some(30)),
                ("Female".into(), Some("Private".into()), 30, None),
            ]
        );
        // Age is type 1: the latest on every version.
        assert!(v.iter().all(|v| v.age == Some(44)));
    }

    #[test]
    fn a_late_event_inserts_into_the_past_and_the_current_version_stays() {
        let on_time = [
            obs(10, 1, "Male", Some("Medicare")),
            obs(50, 2, "Male", Some("Private")),
        ];
        let mut late = on_time.to_vec();
        late.push(obs(30, 3, "Male", Some("Medicaid")));
        assert_eq!(
            shape(&versions("p", &late)),
            vec![
                ("Male".into(), Some("Medicare".into()), 10, Some(30)),
                ("Male".into(), Some("Medicaid".into()), 30, Some(50)),
                ("Male".into(), Some("Private".into()), 50, None),
            ]
        );
        // The same input twice (as duplicates would be) gives the same versions.
        let mut twice = late.clone();
        twice.extend(late.iter().cloned());
        assert_eq!(versions("p", &twice), versions("p", &late));
        assert_eq!(
            at(&versions("p", &late), 35).unwrap().attributes[0].as_deref(),
            Some("Medicaid")
        );
    }
}
