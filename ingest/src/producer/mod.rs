//! `patientflow produce`: simulated registration traffic for the reference network, dirty
//! data included, with a ledger of exactly what was injected.

mod defects;
mod simulate;
mod sink;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Map, Value};

pub use defects::Defect;
pub use sink::{FileSink, Sink};

use crate::error::{Error, Result};
use crate::reference::ReferenceData;
use simulate::{Simulation, Stay, simulate};

/// The record shape to produce (contract §1.1 and §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// One record per stay, as the original producer.
    Flat,
    /// ADT events.
    Adt,
}

/// What the producer injected, for checking the pipeline's quality counts.
#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    /// Seed used.
    pub seed: u64,
    /// Shape produced.
    pub shape: Shape,
    /// Upper bound of event times (RFC 3339).
    pub until: String,
    /// Records written (every line, duplicates and broken ones included).
    pub records_in: u64,
    /// Records that should land in silver.
    pub silver_rows: u64,
    /// Records that should be quarantined.
    pub quarantined: u64,
    /// Duplicates that should be dropped.
    pub duplicates: u64,
    /// Injected defects by rule name (every rule of the producer, zero included).
    pub rules: BTreeMap<String, u64>,
    /// Simulated stays behind the records.
    pub stays: u64,
    /// Simulated patients.
    pub patients: u64,
    /// Where the records went.
    pub outputs: Vec<String>,
}

/// Builder for a production run.
#[derive(Debug, Clone)]
pub struct Producer {
    events: u64,
    shape: Shape,
    seed: u64,
    dirty_rate: f64,
    defect_rates: BTreeMap<Defect, f64>,
    until: i64,
    flu_season: bool,
    evolve_at: f64,
    reference: Option<ReferenceData>,
}

const HOUR: i64 = 3_600_000_000;

impl Producer {
    /// `events` records of `shape`.
    pub fn new(events: u64, shape: Shape) -> Self {
        Self {
            events,
            shape,
            seed: 42,
            dirty_rate: 0.05,
            defect_rates: BTreeMap::new(),
            until: chrono::Utc::now().timestamp() * 1_000_000,
            flu_season: true,
            evolve_at: 0.5,
            reference: None,
        }
    }

    /// Random seed; the same seed and settings give the same records.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Share of records with a defect, spread evenly over the defects that apply.
    pub fn with_dirty_rate(mut self, rate: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::InvalidArgument(format!(
                "dirty rate {rate} is not within 0..=1"
            )));
        }
        self.dirty_rate = rate;
        Ok(self)
    }

    /// Overrides the rate of one defect kind.
    pub fn with_defect_rate(mut self, defect: Defect, rate: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::InvalidArgument(format!(
                "rate {rate} for `{}` is not within 0..=1",
                defect.name()
            )));
        }
        if !defect.applies(self.shape) {
            return Err(Error::InvalidArgument(format!(
                "`{}` does not apply to {:?} records",
                defect.name(),
                self.shape
            )));
        }
        self.defect_rates.insert(defect, rate);
        Ok(self)
    }

    /// Latest event time (UTC micros; default: now). Ingest within 30 days of it, or
    /// `future_admission_time` defects may no longer be in the future.
    pub fn with_until(mut self, until_micros: i64) -> Self {
        self.until = until_micros;
        self
    }

    /// Whether December–February bring a flu-season surge (default on).
    pub fn with_flu_season(mut self, on: bool) -> Self {
        self.flu_season = on;
        self
    }

    /// From this share of the stream on, records carry the new attribute `insurance_type`
    /// (schema evolution); 1.0 never adds it.
    pub fn with_evolve_at(mut self, share: f64) -> Self {
        self.evolve_at = share;
        self
    }

    /// Department reference data to simulate (default: the reference network).
    pub fn with_reference(mut self, reference: ReferenceData) -> Self {
        self.reference = Some(reference);
        self
    }

    fn rates(&self) -> Vec<(Defect, f64)> {
        let applicable: Vec<Defect> = Defect::ALL
            .into_iter()
            .filter(|d| d.applies(self.shape))
            .collect();
        let unset = applicable
            .iter()
            .filter(|d| !self.defect_rates.contains_key(d))
            .count();
        let set_sum: f64 = self.defect_rates.values().sum();
        let even = if unset == 0 {
            0.0
        } else {
            (self.dirty_rate - set_sum).max(0.0) / unset as f64
        };
        applicable
            .into_iter()
            .map(|d| (d, self.defect_rates.get(&d).copied().unwrap_or(even)))
            .collect()
    }

    /// Produces the records into `sink` and returns the ledger.
    pub fn run(self, sink: &mut dyn Sink) -> Result<Ledger> {
        let reference = match &self.reference {
            Some(r) => r.clone(),
            None => ReferenceData::reference_network()?,
        };
        let rates = self.rates();
        let total_rate: f64 = rates.iter().map(|r| r.1).sum();
        if total_rate > 1.0 {
            return Err(Error::InvalidArgument(format!(
                "defect rates add up to {total_rate:.3}, more than 1"
            )));
        }
        let per_stay = match self.shape {
            Shape::Flat => 1.05,
            Shape::Adt => 3.0,
        };
        // Simulate a window long enough for the records wanted; a longer one if it fell short
        // (full wards admit fewer than the arrival rate suggests).
        let mut stays_wanted = (self.events as f64 / per_stay * 1.1) as usize + 16;
        let (mut rng, sim, mut emits) = loop {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            let sim = simulate(
                &mut rng,
                &reference,
                stays_wanted,
                self.until,
                self.flu_season,
            );
            let emits = plan(&mut rng, &sim, self.shape, self.until);
            if emits.len() as u64 >= self.events {
                break (rng, sim, emits);
            }
            stays_wanted = stays_wanted * 3 / 2;
        };
        // A few events arrive late (out of order within their encounter).
        emits.sort_by_key(|e| e.sort_key);

        let mut ledger = Ledger {
            seed: self.seed,
            shape: self.shape,
            until: chrono::DateTime::from_timestamp_micros(self.until)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default(),
            records_in: 0,
            silver_rows: 0,
            quarantined: 0,
            duplicates: 0,
            rules: rates
                .iter()
                .map(|(d, _)| (d.name().to_string(), 0))
                .collect(),
            stays: sim.stays.len() as u64,
            patients: sim.patients.len() as u64,
            outputs: Vec::new(),
        };
        let evolve_from = (self.evolve_at * self.events as f64) as u64;
        let mut delayed: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut emits = emits.into_iter();
        while ledger.records_in < self.events {
            if let Some((due, _)) = delayed.front()
                && *due <= ledger.records_in
                && let Some((_, bytes)) = delayed.pop_front()
            {
                sink.send(&bytes)?;
                ledger.records_in += 1;
                ledger.duplicates += 1;
                *ledger
                    .rules
                    .entry(Defect::Duplicate.name().to_string())
                    .or_default() += 1;
                continue;
            }
            let Some(emit) = emits.next() else {
                return Err(Error::Internal(format!(
                    "the simulation produced too few events for {} records",
                    self.events
                )));
            };
            let with_insurance = ledger.records_in >= evolve_from;
            let mut obj = render(&mut rng, &sim, &emit, self.shape, with_insurance);
            messy(&mut rng, &mut obj);
            let defect = pick_defect(&mut rng, &rates);
            let bytes = match defect {
                None => Value::Object(obj).to_string().into_bytes(),
                Some(d) => {
                    // A duplicate counts when its copy is sent, which the end of the stream
                    // may cut off.
                    if d != Defect::Duplicate {
                        *ledger.rules.entry(d.name().to_string()).or_default() += 1;
                    }
                    if d.quarantines() {
                        ledger.quarantined += 1;
                    }
                    let shift = self.until - emit.time + rng.random_range(HOUR..30 * 24 * HOUR);
                    let future = (iso(emit.time + shift), shift);
                    // The instant the record's time field holds: a flat record's admission
                    // (whatever snapshot of the stay it is), an ADT event's time.
                    let record_time = match self.shape {
                        Shape::Flat => sim.stays[emit.stay].admission,
                        Shape::Adt => emit.time,
                    };
                    let times = (record_time, emit.discharge);
                    let bytes = defects::inject(&mut rng, d, obj, future, iso, times);
                    if d == Defect::Duplicate {
                        let due = ledger.records_in + rng.random_range(1..200);
                        let at = delayed.partition_point(|(t, _)| *t <= due);
                        delayed.insert(at, (due, bytes.clone()));
                    }
                    bytes
                }
            };
            sink.send(&bytes)?;
            ledger.records_in += 1;
        }
        ledger.silver_rows = ledger.records_in - ledger.quarantined - ledger.duplicates;
        ledger.outputs = sink.finish()?;
        Ok(ledger)
    }
}

/// A record to emit: which stay, what happens, when.
#[derive(Debug, Clone)]
struct Emit {
    stay: usize,
    kind: &'static str,
    time: i64,
    discharge: Option<i64>,
    sort_key: i64,
}

fn plan(rng: &mut ChaCha8Rng, sim: &Simulation, shape: Shape, until: i64) -> Vec<Emit> {
    let mut out = Vec::new();
    let mut push = |rng: &mut ChaCha8Rng, stay: usize, kind, time: i64, discharge| {
        if time < until {
            let late = if rng.random_bool(0.03) {
                rng.random_range(0..2 * HOUR)
            } else {
                0
            };
            out.push(Emit {
                stay,
                kind,
                time,
                discharge,
                sort_key: time + late,
            });
        }
    };
    for (i, s) in sim.stays.iter().enumerate() {
        match shape {
            Shape::Flat => {
                push(rng, i, "FLAT", s.admission, Some(s.discharge));
                if rng.random_bool(0.05) {
                    // A correction: the stay's discharge was re-planned.
                    let later = s.discharge + rng.random_range(1..48) * HOUR;
                    let at = s.admission + rng.random_range(1..6) * HOUR;
                    push(rng, i, "FLAT_UPDATE", at, Some(later));
                }
            }
            Shape::Adt => {
                if let Some(a) = s.arrival {
                    push(rng, i, "ARRIVAL", a, None);
                }
                push(rng, i, "ADMIT", s.admission, None);
                if let Some((at, _, _)) = s.transfer {
                    push(rng, i, "TRANSFER", at, None);
                }
                push(rng, i, "DISCHARGE", s.discharge, None);
                if rng.random_bool(0.02) {
                    let at = s.admission + (s.discharge - s.admission) / 3;
                    push(rng, i, "UPDATE", at, None);
                }
            }
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]`, no offset: the original producer's format.
fn iso(t: i64) -> String {
    let d = chrono::DateTime::from_timestamp_micros(t).unwrap_or_default();
    if t % 1_000_000 == 0 {
        d.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        d.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

fn render(
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
            if e.kind == "ARRIVAL" {
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
fn messy(rng: &mut ChaCha8Rng, m: &mut Map<String, Value>) {
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

fn pick_defect(rng: &mut ChaCha8Rng, rates: &[(Defect, f64)]) -> Option<Defect> {
    let mut u: f64 = rng.random();
    for (d, r) in rates {
        if u < *r {
            return Some(*d);
        }
        u -= r;
    }
    None
}

/// Parses `kind=rate` (e.g. `invalid_age=0.01`).
pub fn parse_defect_rate(s: &str) -> Result<(Defect, f64)> {
    let (name, rate) = s.split_once('=').ok_or_else(|| {
        Error::InvalidArgument(format!("`{s}`: expected RULE=RATE, e.g. invalid_age=0.01"))
    })?;
    let defect = Defect::from_name(name.trim()).ok_or_else(|| {
        let known: Vec<&str> = Defect::ALL.iter().map(|d| d.name()).collect();
        Error::InvalidArgument(format!(
            "unknown defect `{name}`; known: {}",
            known.join(", ")
        ))
    })?;
    let rate = rate
        .trim()
        .parse::<f64>()
        .map_err(|_| Error::InvalidArgument(format!("`{rate}` is not a number")))?;
    Ok((defect, rate))
}

/// Writes the ledger as pretty JSON.
pub fn write_ledger(ledger: &Ledger, path: &PathBuf) -> Result<()> {
    let text = serde_json::to_string_pretty(ledger)
        .map_err(|e| Error::Internal(format!("ledger serialisation: {e}")))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Memory(Vec<Vec<u8>>);
    impl Sink for Memory {
        fn send(&mut self, r: &[u8]) -> Result<()> {
            self.0.push(r.to_vec());
            Ok(())
        }
        fn finish(&mut self) -> Result<Vec<String>> {
            Ok(vec!["memory".into()])
        }
    }

    #[test]
    fn deterministic_and_exact_count() {
        let until = 1_795_511_700_000_000;
        let run = |seed| {
            let mut sink = Memory::default();
            let ledger = Producer::new(2_000, Shape::Adt)
                .with_seed(seed)
                .with_until(until)
                .run(&mut sink)
                .unwrap();
            (sink.0, ledger)
        };
        let (a, la) = run(7);
        let (b, _) = run(7);
        let (c, _) = run(8);
        assert_eq!(a.len(), 2_000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            la.records_in,
            la.silver_rows + la.quarantined + la.duplicates
        );
        assert!(la.rules.values().sum::<u64>() > 0);
    }

    #[test]
    fn a_discharge_before_admission_is_before_the_records_own_admission() {
        // Flat records are snapshots of a stay taken at later events (transfers, discharge);
        // the defect must move the discharge before the admission the record carries.
        let mut sink = Memory::default();
        let ledger = Producer::new(3_000, Shape::Flat)
            .with_seed(3)
            .with_until(1_795_511_700_000_000)
            .with_dirty_rate(0.0)
            .unwrap()
            .with_defect_rate(Defect::DischargeBeforeAdmission, 1.0)
            .unwrap()
            .run(&mut sink)
            .unwrap();
        assert_eq!(ledger.rules["discharge_before_admission"], 3_000);
        let time = |v: &Value| {
            chrono::NaiveDateTime::parse_from_str(v.as_str()?, "%Y-%m-%dT%H:%M:%S%.f").ok()
        };
        let mut checked = 0;
        for bytes in &sink.0 {
            let record: Map<String, Value> = serde_json::from_slice(bytes).unwrap();
            // A messy admission (epoch seconds, an offset) is checked by the ingest tests.
            let Some(admission) = time(&record["admission_time"]) else {
                continue;
            };
            let discharge = time(&record["discharge_time"]).unwrap();
            assert!(discharge < admission, "{record:?}");
            checked += 1;
        }
        assert!(checked > 2_800, "{checked}");
    }

    #[test]
    fn defect_rate_parsing() {
        assert_eq!(
            parse_defect_rate("invalid_age=0.5").unwrap(),
            (Defect::InvalidAge, 0.5)
        );
        let err = parse_defect_rate("nope=1").unwrap_err().to_string();
        assert!(err.contains("known: malformed_record"), "{err}");
    }
}
