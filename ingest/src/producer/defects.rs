//! The defects of contract §3 that the producer injects, one per affected record, each named
//! after the rule that must catch it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use super::Shape;

/// One kind of injected defect; `name()` is the rule that catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Defect {
    /// Not a JSON object.
    Malformed,
    /// `patient_id` missing or empty.
    MissingPatientId,
    /// Flat record without `admission_time`.
    MissingAdmissionTime,
    /// ADT event without `event_time`.
    MissingEventTime,
    /// A timestamp in no accepted form.
    InvalidTimestamp,
    /// Admission or event time in the future.
    FutureAdmissionTime,
    /// Discharge before admission.
    DischargeBeforeAdmission,
    /// Department unknown.
    UnknownDepartment,
    /// Hospital unknown.
    UnknownHospital,
    /// Age invalid.
    InvalidAge,
    /// Bed invalid.
    InvalidBed,
    /// The same record sent twice.
    Duplicate,
}

impl Defect {
    /// Every defect kind.
    pub const ALL: [Defect; 12] = [
        Defect::Malformed,
        Defect::MissingPatientId,
        Defect::MissingAdmissionTime,
        Defect::MissingEventTime,
        Defect::InvalidTimestamp,
        Defect::FutureAdmissionTime,
        Defect::DischargeBeforeAdmission,
        Defect::UnknownDepartment,
        Defect::UnknownHospital,
        Defect::InvalidAge,
        Defect::InvalidBed,
        Defect::Duplicate,
    ];

    /// The rule that catches it.
    pub fn name(self) -> &'static str {
        match self {
            Defect::Malformed => "malformed_record",
            Defect::MissingPatientId => "missing_patient_id",
            Defect::MissingAdmissionTime => "missing_admission_time",
            Defect::MissingEventTime => "missing_event_time",
            Defect::InvalidTimestamp => "invalid_timestamp",
            Defect::FutureAdmissionTime => "future_admission_time",
            Defect::DischargeBeforeAdmission => "discharge_before_admission",
            Defect::UnknownDepartment => "unknown_department",
            Defect::UnknownHospital => "unknown_hospital",
            Defect::InvalidAge => "invalid_age",
            Defect::InvalidBed => "invalid_bed",
            Defect::Duplicate => "duplicate_event",
        }
    }

    /// Parses a rule name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether the record goes to quarantine (rather than being kept, corrected or dropped).
    pub fn quarantines(self) -> bool {
        !matches!(
            self,
            Defect::FutureAdmissionTime
                | Defect::InvalidAge
                | Defect::InvalidBed
                | Defect::Duplicate
        )
    }

    /// Whether the source sends a corrected record after this one (in the default mode): it
    /// was rejected, or its time was wrong enough to be corrected on receipt. A record kept
    /// with a field set to NULL is not resent.
    pub fn resent(self) -> bool {
        self.quarantines() || self == Defect::FutureAdmissionTime
    }

    /// Whether the defect exists for records of this shape.
    pub fn applies(self, shape: Shape) -> bool {
        match self {
            Defect::MissingAdmissionTime | Defect::DischargeBeforeAdmission => shape == Shape::Flat,
            Defect::MissingEventTime => shape == Shape::Adt,
            _ => true,
        }
    }
}

fn pick<T: Clone>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())].clone()
}

/// The name of the record's main time field.
fn time_key(obj: &Map<String, Value>) -> &'static str {
    if obj.contains_key("event_type") {
        "event_time"
    } else {
        "admission_time"
    }
}

/// Applies `defect` to a clean record; returns the bytes to send. `future` is a time (ISO
/// text) safely after any ingest of this data, `shift_micros` how far it lies from the
/// original time. `times` are the instant the record's time field holds (a flat record's
/// admission, an ADT event's time) and the stay's discharge, if any.
pub(crate) fn inject(
    rng: &mut ChaCha8Rng,
    defect: Defect,
    mut obj: Map<String, Value>,
    future: (String, i64),
    format_time: impl Fn(i64) -> String,
    times: (i64, Option<i64>),
) -> Vec<u8> {
    let key = time_key(&obj);
    match defect {
        Defect::Malformed => {
            let text = Value::Object(obj).to_string();
            return match rng.random_range(0..5) {
                0 => text.as_bytes()[..text.len() / 2].to_vec(),
                1 => format!("[{text}]").into_bytes(),
                2 => Value::String(text).to_string().into_bytes(),
                3 => {
                    let mut b = text.into_bytes();
                    let at = b.len() / 2;
                    b.splice(at..at, [0xff, 0xfe]);
                    b
                }
                _ => b"<html><body>502 Bad Gateway</body></html>".to_vec(),
            };
        }
        Defect::MissingPatientId => match rng.random_range(0..3) {
            0 => {
                obj.remove("patient_id");
            }
            1 => {
                obj.insert("patient_id".into(), Value::String(String::new()));
            }
            _ => {
                obj.insert("patient_id".into(), Value::Null);
            }
        },
        Defect::MissingAdmissionTime | Defect::MissingEventTime => {
            if rng.random_bool(0.5) {
                obj.remove(key);
            } else {
                obj.insert(key.into(), Value::Null);
            }
        }
        Defect::InvalidTimestamp => {
            let bad = pick(
                rng,
                &[
                    "not a date",
                    "2026-13-45T99:00:00",
                    "24/11/2026 09:15",
                    "yesterday",
                    "2026-02-30T10:00:00",
                ],
            );
            obj.insert(key.into(), Value::String(bad.into()));
        }
        Defect::FutureAdmissionTime => {
            obj.insert(key.into(), Value::String(future.0));
            if let Some(d) = times.1 {
                // Keep the stay's length so the corrected record stays consistent.
                obj.insert(
                    "discharge_time".into(),
                    Value::String(format_time(d + future.1)),
                );
            }
        }
        Defect::DischargeBeforeAdmission => {
            let before = times.0 - rng.random_range(1..72) * 3_600_000_000;
            obj.insert("discharge_time".into(), Value::String(format_time(before)));
        }
        Defect::UnknownDepartment => {
            let bad = pick(
                rng,
                &["Radiology", "Cardiologyy", "X-Ray", "Dermatology", ""],
            );
            obj.insert("department".into(), Value::String(bad.into()));
        }
        Defect::UnknownHospital => {
            let bad = pick(
                rng,
                &[
                    Value::from(0),
                    Value::from(8),
                    Value::from(42),
                    Value::from("H3"),
                ],
            );
            obj.insert("hospital_id".into(), bad);
        }
        Defect::InvalidAge => {
            let bad = pick(
                rng,
                &[
                    Value::from(-4),
                    Value::from(121),
                    Value::from(150),
                    Value::from("forty"),
                    Value::from(54.5),
                    Value::from(true),
                ],
            );
            obj.insert("age".into(), bad);
        }
        Defect::InvalidBed => {
            let bad = pick(
                rng,
                &[
                    Value::from(0),
                    Value::from(-7),
                    Value::from("B-12"),
                    Value::from(3.5),
                    Value::from(false),
                ],
            );
            obj.insert("bed_id".into(), bad);
        }
        Defect::Duplicate => {}
    }
    Value::Object(obj).to_string().into_bytes()
}
