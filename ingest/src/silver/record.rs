//! One input record after parsing and normalisation (contract §1–§2), before the rules decide
//! its outcome.

use chrono_tz::Tz;
use xxhash_rust::xxh3::Xxh3;

use super::json::{Members, Scalar};
use super::time::parse_timestamp;
use crate::reference::ReferenceData;

/// A field after normalisation: absent, accepted, or present but unusable.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field<T> {
    Missing,
    Valid(T),
    Invalid,
}

impl<T> Field<T> {
    pub(crate) fn valid(&self) -> Option<&T> {
        match self {
            Field::Valid(v) => Some(v),
            _ => None,
        }
    }
}

/// The two accepted record shapes (contract §1.1 and §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Flat,
    Adt,
}

impl Shape {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Shape::Flat => "flat",
            Shape::Adt => "adt",
        }
    }
}

/// The ADT event types of contract §1.2.
pub(crate) const EVENT_TYPES: [&str; 5] = ["ARRIVAL", "ADMIT", "TRANSFER", "DISCHARGE", "UPDATE"];

const FLAT_KEYS: [&str; 8] = [
    "patient_id",
    "gender",
    "age",
    "department",
    "admission_time",
    "discharge_time",
    "bed_id",
    "hospital_id",
];
const ADT_KEYS: [&str; 10] = [
    "event_id",
    "event_type",
    "event_time",
    "encounter_id",
    "patient_id",
    "hospital_id",
    "department",
    "bed_id",
    "gender",
    "age",
];

/// A parsed, normalised record. Timestamps are UTC microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// `None` when the text is not a JSON object.
    pub(crate) shape: Option<Shape>,
    pub(crate) event_id: Option<String>,
    pub(crate) event_type: Field<&'static str>,
    pub(crate) encounter_id: Option<String>,
    pub(crate) patient_id: Option<String>,
    pub(crate) hospital_id: Field<i32>,
    pub(crate) department: Field<String>,
    pub(crate) bed_id: Field<i64>,
    pub(crate) gender: &'static str,
    pub(crate) age: Field<i32>,
    /// Flat: `admission_time`; ADT: `event_time`.
    pub(crate) time: Field<i64>,
    pub(crate) discharge_time: Field<i64>,
    pub(crate) time_corrected: bool,
    /// Extra attributes (contract §1.3): raw key and text value, in document order.
    pub(crate) extras: Vec<(String, String)>,
    /// Hash of the normalised content (flat) or of the event id (ADT): the duplicate key.
    pub(crate) dedupe_key: u128,
}

impl Record {
    fn malformed() -> Self {
        Record {
            shape: None,
            event_id: None,
            event_type: Field::Missing,
            encounter_id: None,
            patient_id: None,
            hospital_id: Field::Missing,
            department: Field::Missing,
            bed_id: Field::Missing,
            gender: "Unknown",
            age: Field::Missing,
            time: Field::Missing,
            discharge_time: Field::Missing,
            time_corrected: false,
            extras: Vec::new(),
            dedupe_key: 0,
        }
    }

    /// Parses and normalises one raw record.
    pub(crate) fn parse(raw: &[u8], reference: &ReferenceData, source_tz: Tz) -> Self {
        let Ok(text) = std::str::from_utf8(raw) else {
            return Self::malformed();
        };
        let Ok(members) = Members::parse(text) else {
            return Self::malformed();
        };
        let scalar = |key: &str| members.get(key).map_or(Scalar::Null, Scalar::of);
        let event_type_value = scalar("event_type");
        let shape = if event_type_value == Scalar::Null {
            Shape::Flat
        } else {
            Shape::Adt
        };
        let timestamp = |key: &str| match parse_timestamp(&scalar(key), source_tz) {
            Ok(None) => Field::Missing,
            Ok(Some(t)) => Field::Valid(t),
            Err(()) => Field::Invalid,
        };
        let (time, discharge_time) = match shape {
            Shape::Flat => (timestamp("admission_time"), timestamp("discharge_time")),
            Shape::Adt => (timestamp("event_time"), Field::Missing),
        };
        let known: &[&str] = match shape {
            Shape::Flat => &FLAT_KEYS,
            Shape::Adt => &ADT_KEYS,
        };
        let mut extras: Vec<(String, String)> = Vec::new();
        for (key, raw) in &members.0 {
            if known.contains(&key.as_ref()) {
                continue;
            }
            if let Some(text) = Scalar::of(raw).into_text(raw) {
                // A repeated key: the last occurrence wins, as for known fields.
                extras.retain(|(k, _)| k != key);
                extras.push((key.to_string(), text));
            }
        }
        let mut record = Record {
            shape: Some(shape),
            event_id: match shape {
                Shape::Adt => text_id(&scalar("event_id")),
                Shape::Flat => None,
            },
            event_type: match event_type_value {
                Scalar::Str(s) => EVENT_TYPES
                    .iter()
                    .find(|t| t.eq_ignore_ascii_case(s.trim()))
                    .map_or(Field::Invalid, |t| Field::Valid(*t)),
                Scalar::Null => Field::Missing,
                _ => Field::Invalid,
            },
            encounter_id: match shape {
                Shape::Adt => text_id(&scalar("encounter_id")),
                Shape::Flat => None,
            },
            patient_id: text_id(&scalar("patient_id")),
            hospital_id: match integer(&scalar("hospital_id")) {
                Field::Valid(id) if reference.has_hospital(id) => Field::Valid(id as i32),
                Field::Missing => Field::Missing,
                _ => Field::Invalid,
            },
            department: match scalar("department") {
                Scalar::Null => Field::Missing,
                Scalar::Str(s) => reference
                    .canonical_department(&s)
                    .map_or(Field::Invalid, |d| Field::Valid(d.to_string())),
                _ => Field::Invalid,
            },
            bed_id: match integer(&scalar("bed_id")) {
                Field::Valid(b) if b > 0 => Field::Valid(b),
                Field::Missing => Field::Missing,
                _ => Field::Invalid,
            },
            gender: gender(&scalar("gender")),
            age: match integer(&scalar("age")) {
                Field::Valid(a) if (0..=120).contains(&a) => Field::Valid(a as i32),
                Field::Missing => Field::Missing,
                _ => Field::Invalid,
            },
            time,
            discharge_time,
            time_corrected: false,
            extras,
            dedupe_key: 0,
        };
        record.dedupe_key = record.content_key();
        record
    }

    /// The duplicate key of contract §3: the event id for ADT events that carry one, otherwise
    /// a hash of the whole normalised content.
    fn content_key(&self) -> u128 {
        let mut h = Xxh3::new();
        if let (Some(Shape::Adt), Some(id)) = (self.shape, &self.event_id) {
            h.update(b"event_id\0");
            h.update(id.as_bytes());
            return h.digest128();
        }
        let mut put = |tag: &str, bytes: &[u8]| {
            h.update(tag.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        fn field<T: std::fmt::Debug>(f: &Field<T>) -> String {
            format!("{f:?}")
        }
        put("shape", self.shape.map_or("", Shape::as_str).as_bytes());
        put("event_type", field(&self.event_type).as_bytes());
        put(
            "encounter",
            self.encounter_id.as_deref().unwrap_or("").as_bytes(),
        );
        put(
            "patient",
            self.patient_id.as_deref().unwrap_or("").as_bytes(),
        );
        put("hospital", field(&self.hospital_id).as_bytes());
        put("department", field(&self.department).as_bytes());
        put("bed", field(&self.bed_id).as_bytes());
        put("gender", self.gender.as_bytes());
        put("age", field(&self.age).as_bytes());
        put("time", field(&self.time).as_bytes());
        put("discharge", field(&self.discharge_time).as_bytes());
        let mut extras: Vec<_> = self.extras.iter().collect();
        extras.sort();
        for (k, v) in extras {
            put(k, v.as_bytes());
        }
        h.digest128()
    }
}

/// An identifier: a non-empty string (trimmed) or an integer.
fn text_id(value: &Scalar<'_>) -> Option<String> {
    match value {
        Scalar::Str(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Scalar::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// An integer, an integral float, or a numeric string.
pub(crate) fn integer(value: &Scalar<'_>) -> Field<i64> {
    let from_float = |f: f64| {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Field::Valid(f as i64)
        } else {
            Field::Invalid
        }
    };
    match value {
        Scalar::Null => Field::Missing,
        Scalar::Int(i) => Field::Valid(*i),
        Scalar::Float(f) => from_float(*f),
        Scalar::Str(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(i) => Field::Valid(i),
                Err(_) => s.parse::<f64>().map_or(Field::Invalid, from_float),
            }
        }
        Scalar::Bool(_) | Scalar::Composite(_) => Field::Invalid,
    }
}

pub(crate) fn gender(value: &Scalar<'_>) -> &'static str {
    match value {
        Scalar::Str(s) => {
            let s = s.trim();
            if s.eq_ignore_ascii_case("m") || s.eq_ignore_ascii_case("male") {
                "Male"
            } else if s.eq_ignore_ascii_case("f") || s.eq_ignore_ascii_case("female") {
                "Female"
            } else {
                "Unknown"
            }
        }
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Record {
        Record::parse(
            s.as_bytes(),
            &ReferenceData::reference_network().unwrap(),
            Tz::UTC,
        )
    }

    #[test]
    fn flat_record_normalises() {
        let r = parse(
            r#"{"patient_id":" p1 ","gender":" FEMALE","age":"54","department":"er",
                "admission_time":"2026-11-24 09:15:02","discharge_time":1795600000,
                "bed_id":"117","hospital_id":3,"insurance_type":"Medicare","triage":2}"#,
        );
        assert_eq!(r.shape, Some(Shape::Flat));
        assert_eq!(r.patient_id.as_deref(), Some("p1"));
        assert_eq!(r.gender, "Female");
        assert_eq!(r.age, Field::Valid(54));
        assert_eq!(r.department, Field::Valid("Emergency".into()));
        assert_eq!(r.bed_id, Field::Valid(117));
        assert_eq!(r.hospital_id, Field::Valid(3));
        assert_eq!(r.discharge_time, Field::Valid(1_795_600_000_000_000));
        assert_eq!(
            r.extras,
            vec![
                ("insurance_type".to_string(), "Medicare".to_string()),
                ("triage".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn invalid_values_are_marked() {
        let r = parse(
            r#"{"event_type":"admit","event_id":"e1","patient_id":"","age":150,"bed_id":-2,
                "hospital_id":99,"department":"Radiology","gender":"x","event_time":"soon"}"#,
        );
        assert_eq!(r.shape, Some(Shape::Adt));
        assert_eq!(r.event_type, Field::Valid("ADMIT"));
        assert_eq!(r.patient_id, None);
        assert_eq!(r.age, Field::Invalid);
        assert_eq!(r.bed_id, Field::Invalid);
        assert_eq!(r.hospital_id, Field::Invalid);
        assert_eq!(r.department, Field::Invalid);
        assert_eq!(r.gender, "Unknown");
        assert_eq!(r.time, Field::Invalid);
        assert_eq!(r.age, Field::Invalid);
        assert_eq!(parse(r#"{"age": 54.5}"#).age, Field::Invalid);
        assert_eq!(parse(r#"{"age": 54.0}"#).age, Field::Valid(54));
    }

    #[test]
    fn equal_content_has_equal_keys() {
        let a = parse(r#"{"patient_id":"p","admission_time":"2026-11-24T09:15:02Z","gender":"m"}"#);
        let b =
            parse(r#"{"gender":"Male", "patient_id":"p","admission_time":"2026-11-24 09:15:02"}"#);
        let c =
            parse(r#"{"gender":"Male", "patient_id":"q","admission_time":"2026-11-24 09:15:02"}"#);
        assert_eq!(a.dedupe_key, b.dedupe_key);
        assert_ne!(a.dedupe_key, c.dedupe_key);
        assert_eq!(
            Record::parse(
                b"\xff{}",
                &ReferenceData::reference_network().unwrap(),
                Tz::UTC
            )
            .shape,
            None
        );
    }
}
