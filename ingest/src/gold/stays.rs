//! Stays rebuilt from a patient's records (contract §1): an ADT encounter from all its events
//! in event-time order, a flat stay from the latest record received for its stay key; and the
//! emergency-department visits of the encounters with an `ARRIVAL` (contract §5.1).

use std::collections::BTreeMap;

use super::history::{Kind, Observation};

/// Where a stay was from `start` until `end` (exclusive; `None`: still there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) department: String,
    pub(crate) bed_id: Option<i64>,
    pub(crate) start: i64,
    pub(crate) end: Option<i64>,
}

/// One stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stay {
    pub(crate) stay_key: String,
    pub(crate) record_kind: &'static str,
    pub(crate) encounter_id: Option<String>,
    pub(crate) hospital_id: i32,
    pub(crate) admission_time: i64,
    /// The discharge time as recorded; a flat record's may lie after the as-of time.
    pub(crate) discharge_time: Option<i64>,
    pub(crate) arrival_time: Option<i64>,
    pub(crate) age: Option<i32>,
    pub(crate) corrected: bool,
    /// The latest event time among the stay's records (contract §5.1): any ADT event of the
    /// encounter; a flat record's admission, or its receipt when that is later.
    pub(crate) last_event: i64,
    /// In time order; the last ends at the discharge.
    pub(crate) segments: Vec<Segment>,
}

/// An encounter registered at the emergency department (`ARRIVAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EdVisit {
    pub(crate) encounter_id: String,
    pub(crate) hospital_id: i32,
    pub(crate) department: String,
    /// The earliest `ARRIVAL`.
    pub(crate) arrival_time: i64,
    /// The encounter's `ADMIT`, if any.
    pub(crate) admission_time: Option<i64>,
    /// The first `DISCHARGE` at or after the arrival, for an encounter without `ADMIT`.
    pub(crate) discharge_time: Option<i64>,
}

/// A patient's stays and emergency-department visits, and how many encounters have no
/// `ADMIT` yet (they wait in silver until it arrives).
#[derive(Debug, Default)]
pub(crate) struct Rebuilt {
    pub(crate) stays: Vec<Stay>,
    pub(crate) ed_visits: Vec<EdVisit>,
    pub(crate) waiting: usize,
}

/// Rebuilds one patient's stays and emergency-department visits from all their records.
pub(crate) fn stays(patient_id: &str, observations: &[Observation]) -> Rebuilt {
    let mut encounters: BTreeMap<&str, Vec<&Observation>> = BTreeMap::new();
    // The latest record of each key, and the key's last event.
    let mut flat: BTreeMap<(i32, i64), (&Observation, i64)> = BTreeMap::new();
    // Observations come in receipt order, so the last flat record of a key wins.
    for o in observations {
        match (o.kind, o.encounter_id.as_deref()) {
            (Kind::Flat, _) => {
                let last = o.time.max(o.received_at);
                let entry = flat.entry((o.hospital_id, o.time)).or_insert((o, last));
                *entry = (o, entry.1.max(last));
            }
            (_, Some(id)) => encounters.entry(id).or_default().push(o),
            (_, None) => {}
        }
    }
    let stays = flat
        .into_iter()
        .map(|((hospital_id, admission), (o, last_event))| Stay {
            stay_key: format!("flat:{patient_id}:{hospital_id}:{admission}"),
            record_kind: "flat",
            encounter_id: None,
            hospital_id,
            admission_time: admission,
            discharge_time: o.discharge_time,
            arrival_time: None,
            age: o.age,
            corrected: o.corrected,
            last_event,
            segments: vec![Segment {
                department: o.department.clone(),
                bed_id: o.bed_id,
                start: admission,
                end: o.discharge_time,
            }],
        })
        .collect();
    let mut out = Rebuilt {
        stays,
        ..Rebuilt::default()
    };
    for (id, mut events) in encounters {
        events.sort_by(|a, b| (a.time, &a.received).cmp(&(b.time, &b.received)));
        let stay = encounter(id, &events);
        out.ed_visits.extend(ed_visit(id, &events, stay.as_ref()));
        match stay {
            Some(stay) => out.stays.push(stay),
            None => out.waiting += 1,
        }
    }
    out
}

/// The emergency-department visit of an encounter with an `ARRIVAL` (events in time order).
fn ed_visit(id: &str, events: &[&Observation], stay: Option<&Stay>) -> Option<EdVisit> {
    let arrival = events.iter().find(|o| o.kind == Kind::Arrival)?;
    let admission_time = stay.map(|s| s.admission_time);
    Some(EdVisit {
        encounter_id: id.to_string(),
        hospital_id: arrival.hospital_id,
        department: arrival.department.clone(),
        arrival_time: arrival.time,
        admission_time,
        discharge_time: admission_time
            .is_none()
            .then(|| {
                events
                    .iter()
                    .find(|o| o.kind == Kind::Discharge && o.time >= arrival.time)
                    .map(|o| o.time)
            })
            .flatten(),
    })
}

fn encounter(id: &str, events: &[&Observation]) -> Option<Stay> {
    let admit = events.iter().find(|o| o.kind == Kind::Admit)?;
    let admission = admit.time;
    let discharge = events
        .iter()
        .find(|o| o.kind == Kind::Discharge && o.time >= admission)
        .map(|o| o.time);
    let mut segments = vec![Segment {
        department: admit.department.clone(),
        bed_id: admit.bed_id,
        start: admission,
        end: None,
    }];
    for t in events.iter().filter(|o| {
        o.kind == Kind::Transfer && o.time > admission && discharge.is_none_or(|d| o.time < d)
    }) {
        if let Some(last) = segments.last_mut() {
            last.end = Some(t.time);
        }
        segments.push(Segment {
            department: t.department.clone(),
            bed_id: t.bed_id,
            start: t.time,
            end: None,
        });
    }
    if let Some(last) = segments.last_mut() {
        last.end = discharge;
    }
    Some(Stay {
        stay_key: id.to_string(),
        record_kind: "adt",
        encounter_id: Some(id.to_string()),
        hospital_id: admit.hospital_id,
        admission_time: admission,
        discharge_time: discharge,
        arrival_time: events
            .iter()
            .filter(|o| o.kind == Kind::Arrival && o.time <= admission)
            .map(|o| o.time)
            .min(),
        age: admit.age.or_else(|| events.iter().find_map(|o| o.age)),
        corrected: admit.corrected,
        last_event: events.iter().map(|o| o.time).max().unwrap_or(admission),
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: Kind, time: i64, seq: i64, department: &str) -> Observation {
        Observation {
            received: (seq, "f".into(), seq),
            from_ehr: false,
            kind,
            encounter_id: Some("enc".into()),
            hospital_id: 2,
            department: department.into(),
            bed_id: Some(seq),
            gender: "Female".into(),
            age: Some(30),
            time,
            received_at: time,
            discharge_time: None,
            corrected: false,
            attributes: vec![],
        }
    }

    #[test]
    fn an_encounter_is_rebuilt_from_events_in_any_order() {
        // Received out of order: discharge first, then transfer, then admit, arrival last.
        let events = [
            ev(Kind::Discharge, 100, 1, "ICU"),
            ev(Kind::Transfer, 60, 2, "ICU"),
            ev(Kind::Admit, 20, 3, "Surgery"),
            ev(Kind::Arrival, 5, 4, "Emergency"),
        ];
        let rebuilt = stays("p", &events);
        assert_eq!(rebuilt.waiting, 0);
        let s = &rebuilt.stays[0];
        assert_eq!(
            (
                s.admission_time,
                s.discharge_time,
                s.arrival_time,
                s.last_event
            ),
            (20, Some(100), Some(5), 100)
        );
        assert_eq!(
            rebuilt.ed_visits,
            vec![EdVisit {
                encounter_id: "enc".into(),
                hospital_id: 2,
                department: "Emergency".into(),
                arrival_time: 5,
                admission_time: Some(20),
                discharge_time: None,
            }]
        );
        assert_eq!(
            s.segments,
            vec![
                Segment {
                    department: "Surgery".into(),
                    bed_id: Some(3),
                    start: 20,
                    end: Some(60)
                },
                Segment {
                    department: "ICU".into(),
                    bed_id: Some(2),
                    start: 60,
                    end: Some(100)
                },
            ]
        );
    }

    #[test]
    fn an_encounter_without_admit_waits_and_flat_records_update_their_stay() {
        let waiting = stays("p", &[ev(Kind::Arrival, 5, 1, "Emergency")]);
        assert!(waiting.stays.is_empty());
        assert_eq!(waiting.waiting, 1);
        assert_eq!(waiting.ed_visits[0].admission_time, None);
        // Discharged from the emergency department without an admission.
        let left = stays(
            "p",
            &[
                ev(Kind::Discharge, 40, 2, "Emergency"),
                ev(Kind::Arrival, 5, 1, "Emergency"),
            ],
        );
        assert_eq!(
            (
                left.ed_visits[0].arrival_time,
                left.ed_visits[0].discharge_time
            ),
            (5, Some(40))
        );

        let mut first = ev(Kind::Flat, 20, 1, "ICU");
        first.discharge_time = Some(50);
        first.received_at = 30;
        let mut correction = first.clone();
        correction.received.0 = 2;
        correction.discharge_time = Some(80);
        correction.received_at = 25;
        let rebuilt = stays("p", &[first, correction]);
        assert_eq!(rebuilt.stays.len(), 1);
        assert_eq!(rebuilt.stays[0].discharge_time, Some(80));
        assert_eq!(rebuilt.stays[0].segments[0].end, Some(80));
        // A flat stay's last event: the latest receipt of its records (after its admission).
        assert_eq!(rebuilt.stays[0].last_event, 30);
    }
}
