//! Records as the registration systems send them: a simulated event rendered as JSON, with
//! the untidy spellings normalisation must absorb.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use super::Shape;
use super::plan::Emit;
use super::simulate::{Simulation, Stay, StayKind};

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]`, no offset: the original producer's format.
pub(crate) fn iso(t: i64) -> String {
    let d = chrono::DateTime::from_timestamp_micros(t).unwrap_or_default();
    if t % 1_000_000 == 0 {
        d.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        d.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

pub(crate) fn render(
    rng: &mut ChaCha8Rng,
    sim: &Simulation,
    e: &Emit,
    shape: Shape,
    insurance: bool,
) -> Map<String, Value> {
    let s: &Stay = &sim.stays[e.stay];
    let p = &sim.patients[s.patient];
    let age = p.age;
    let mut m = Map::new();
    // Department and bed at the time of the event (a transfer moves the stay).
    let (department, bed) = match s.transfer {
        Some((at, to, bed)) if e.time >= at => (to, bed),
        _ => (s.department, s.bed_id),
    };
    m.insert("patient_id".into(), p.id.clone().into());
    m.insert("hospital_id".into(), s.hospital_id.into());
    m.insert("department".into(), department.into());
    m.insert("gender".into(), p.gender.into());
    m.insert("age".into(), age.into());
    match shape {
        Shape::Flat => {
            m.insert("admission_time".into(), iso(s.admission).into());
            m.insert(
                "discharge_time".into(),
                iso(e.discharge.unwrap_or(s.discharge)).into(),
            );
            m.insert("bed_id".into(), bed.into());
        }
        Shape::Adt => {
            m.insert(
                "event_id".into(),
                uuid::Builder::from_random_bytes(rng.random())
                    .into_uuid()
                    .to_string()
                    .into(),
            );
            m.insert("event_type".into(), e.kind.into());
            m.insert("event_time".into(), format!("{}Z", iso(e.time)).into());
            m.insert("encounter_id".into(), s.encounter_id.clone().into());
            if s.kind != StayKind::Admitted {
                // Left the emergency department without a bed.
                m.insert("department".into(), "Emergency".into());
                if e.kind == "ARRIVAL" {
                    m.insert("triage_level".into(), s.triage.into());
                }
            } else if e.kind == "ARRIVAL" {
                m.insert("department".into(), "Emergency".into());
                m.insert("triage_level".into(), s.triage.into());
            } else {
                m.insert("bed_id".into(), bed.into());
            }
        }
    }
    if insurance {
        m.insert("insurance_type".into(), p.insurance.into());
    }
    m
}

/// Valid but untidy spellings that normalisation must absorb (no rule fires for them).
pub(crate) fn messy(rng: &mut ChaCha8Rng, m: &mut Map<String, Value>) {
    if !rng.random_bool(0.15) {
        return;
    }
    match rng.random_range(0..6) {
        0 => {
            if let Some(Value::String(g)) = m.get("gender") {
                let v = if g == "Male" { "m" } else { " FEMALE " };
                m.insert("gender".into(), v.into());
            }
        }
        1 => {
            if let Some(Value::String(d)) = m.get("department") {
                let v = match d.as_str() {
                    "Emergency" => "ER".to_string(),
                    "ICU" => "icu".to_string(),
                    other => other.to_uppercase(),
                };
                m.insert("department".into(), v.into());
            }
        }
        2 => {
            if let Some(age) = m.get("age").and_then(Value::as_i64) {
                m.insert("age".into(), age.to_string().into());
            }
        }
        3 => {
            if let Some(bed) = m.get("bed_id").and_then(Value::as_i64) {
                m.insert("bed_id".into(), bed.to_string().into());
            }
        }
        _ => {
            let key = if m.contains_key("event_time") {
                "event_time"
            } else {
                "admission_time"
            };
            if let Some(Value::String(t)) = m.get(key).cloned() {
                let plain = t.trim_end_matches('Z');
                let v: Value = if plain.len() == 19 && rng.random_bool(0.5) {
                    // Whole seconds: epoch seconds or milliseconds.
                    let secs = chrono::NaiveDateTime::parse_from_str(plain, "%Y-%m-%dT%H:%M:%S")
                        .map(|d| d.and_utc().timestamp())
                        .unwrap_or_default();
                    if rng.random_bool(0.5) {
                        secs.into()
                    } else {
                        (secs * 1000).into()
                    }
                } else if rng.random_bool(0.5) {
                    plain.replacen('T', " ", 1).into()
                } else {
                    // The same instant at UTC-06:00 (US Central, standard time).
                    let utc = chrono::NaiveDateTime::parse_from_str(plain, "%Y-%m-%dT%H:%M:%S%.f")
                        .unwrap_or_default();
                    let local = utc - chrono::Duration::hours(6);
                    format!("{}-06:00", local.format("%Y-%m-%dT%H:%M:%S%.f")).into()
                };
                m.insert(key.into(), v);
            }
        }
    }
}
