//! `patientflow produce`: simulated registration traffic for the reference network, dirty
//! data included, with a ledger of exactly what was injected.

mod defects;
mod ledger;
mod plan;
mod render;
mod simulate;
mod sink;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

pub use defects::Defect;
pub use ledger::{ExpectedOpenStays, Ledger};
pub use sink::{FileSink, Sink};

use crate::error::{Error, Result};
use crate::reference::ReferenceData;
use ledger::OpenStays;
use plan::{Emit, plan};
use render::{iso, messy, render};
use simulate::{StayKind, simulate};

/// The record shape to produce (contract §1.1 and §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// One record per stay, as the original producer.
    Flat,
    /// ADT events.
    Adt,
}

/// What becomes of a record the producer spoils with a defect the pipeline quarantines or
/// corrects (a future time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefectMode {
    /// The defective record is sent, then the clean one (the registration system's rejected
    /// message and its corrected resend): nothing is lost through a defect.
    #[default]
    Add,
    /// The defective record is sent instead of the clean one.
    Replace,
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
    defect_mode: DefectMode,
    lost_rate: f64,
    reference: Option<ReferenceData>,
}

const HOUR: i64 = 3_600_000_000;

/// What happens to one planned record, drawn from its own random stream.
#[derive(Debug, Clone, Copy)]
struct Decision {
    lost: bool,
    defect: Option<Defect>,
}

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
            defect_mode: DefectMode::Add,
            lost_rate: 0.002,
            reference: None,
        }
    }

    /// Whether a quarantined defect is sent before the clean record (default) or instead.
    pub fn with_defect_mode(mut self, mode: DefectMode) -> Self {
        self.defect_mode = mode;
        self
    }

    /// Share of clean ADT events never sent at all (default 0.002): lost discharges and
    /// transfers, as real feeds lose them.
    pub fn with_lost_rate(mut self, rate: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::InvalidArgument(format!(
                "lost rate {rate} is not within 0..=1"
            )));
        }
        self.lost_rate = rate;
        Ok(self)
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

    /// Where the history ends (UTC micros; default: now): the last events fall in the hour
    /// before it, whatever the number of records. Ingest within 30 days of it, or
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

    /// The random stream of planned record `i`: the same record gets the same draws however
    /// many records come before it.
    fn stream(&self, i: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(i as u64 + 1);
        rng
    }

    fn decide(&self, rng: &mut ChaCha8Rng, rates: &[(Defect, f64)]) -> Decision {
        let lost = self.shape == Shape::Adt && rng.random_bool(self.lost_rate);
        let defect = if lost { None } else { pick_defect(rng, rates) };
        Decision { lost, defect }
    }

    /// How many lines a decision sends.
    fn lines(&self, d: Decision) -> u64 {
        match d.defect {
            _ if d.lost => 0,
            Some(Defect::Duplicate) => 2,
            Some(d) if d.resent() && self.defect_mode == DefectMode::Add => 2,
            _ => 1,
        }
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
        // Simulate a window long enough for the records wanted, and send its last records
        // (a longer window if it fell short: full wards admit fewer than the arrival rate
        // suggests).
        let mut stays_wanted = (self.events as f64 / per_stay * 1.1) as usize + 16;
        let (sim, emits, first) = loop {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            let sim = simulate(
                &mut rng,
                &reference,
                stays_wanted,
                self.until,
                self.flu_season,
            );
            let emits = plan(&mut rng, &sim, self.shape, self.until);
            let mut lines = 0;
            let first = (0..emits.len()).rev().find(|&i| {
                lines += self.lines(self.decide(&mut self.stream(i), &rates));
                lines >= self.events
            });
            if let Some(first) = first {
                break (sim, emits, first);
            }
            stays_wanted = stays_wanted * 3 / 2;
        };

        let mut out = Stream {
            sink,
            limit: self.events,
            ledger: Ledger {
                seed: self.seed,
                shape: self.shape,
                until: rfc3339(self.until).unwrap_or_default(),
                first_event: None,
                last_event: None,
                records_in: 0,
                silver_rows: 0,
                quarantined: 0,
                duplicates: 0,
                rules: rates
                    .iter()
                    .map(|(d, _)| (d.name().to_string(), 0))
                    .collect(),
                lost: BTreeMap::new(),
                stays: sim
                    .stays
                    .iter()
                    .filter(|s| s.kind == StayKind::Admitted)
                    .count() as u64,
                left_without_admission: sim
                    .stays
                    .iter()
                    .filter(|s| s.kind != StayKind::Admitted)
                    .count() as u64,
                patients: sim.patients.len() as u64,
                open_stays: Vec::new(),
                outputs: Vec::new(),
            },
            open: OpenStays::default(),
            times: None,
        };
        let evolve_from = (self.evolve_at * self.events as f64) as u64;
        let mut delayed: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        for (i, emit) in emits.iter().enumerate().skip(first) {
            while let Some((due, _)) = delayed.front()
                && *due <= out.ledger.records_in
                && let Some((_, bytes)) = delayed.pop_front()
            {
                out.duplicate(&bytes)?;
            }
            let mut rng = self.stream(i);
            let decision = self.decide(&mut rng, &rates);
            if decision.lost {
                *out.ledger.lost.entry(emit.kind.to_string()).or_default() += 1;
                continue;
            }
            let with_insurance = out.ledger.records_in >= evolve_from;
            let mut obj = render(&mut rng, &sim, emit, self.shape, with_insurance);
            messy(&mut rng, &mut obj);
            let Some(d) = decision.defect else {
                out.clean(emit, &Value::Object(obj).to_string().into_bytes(), false)?;
                continue;
            };
            // A duplicate counts when its copy is sent.
            if d != Defect::Duplicate && out.has_room() {
                *out.ledger.rules.entry(d.name().to_string()).or_default() += 1;
            }
            let mut resend = obj.clone();
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
            let corrected = d == Defect::FutureAdmissionTime;
            if d.resent() {
                if corrected {
                    out.clean(emit, &bytes, true)?;
                } else {
                    out.quarantined(&bytes)?;
                }
                if self.defect_mode == DefectMode::Add {
                    // The corrected resend is a new message.
                    if resend.contains_key("event_id") {
                        let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
                        resend.insert("event_id".into(), id.to_string().into());
                    }
                    out.clean(emit, &Value::Object(resend).to_string().into_bytes(), false)?;
                }
                continue;
            }
            out.clean(emit, &bytes, false)?;
            if d == Defect::Duplicate {
                let due = out.ledger.records_in + rng.random_range(1..200);
                let at = delayed.partition_point(|(t, _)| *t <= due);
                delayed.insert(at, (due, bytes));
            }
        }
        for (_, bytes) in delayed {
            out.duplicate(&bytes)?;
        }
        let Stream {
            sink,
            mut ledger,
            open,
            times,
            ..
        } = out;
        if ledger.records_in < self.events {
            return Err(Error::Internal(format!(
                "the simulation produced {} of {} records",
                ledger.records_in, self.events
            )));
        }
        ledger.silver_rows = ledger.records_in - ledger.quarantined - ledger.duplicates;
        if self.shape == Shape::Adt {
            ledger.open_stays = open.expected(&sim, &reference, self.until);
        }
        ledger.first_event = times.and_then(|t| rfc3339(t.0));
        ledger.last_event = times.and_then(|t| rfc3339(t.1));
        ledger.outputs = sink.finish()?;
        Ok(ledger)
    }
}

fn rfc3339(t: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(t).map(|d| d.to_rfc3339())
}

/// The lines sent so far, and the ledger of them: nothing past `limit` is sent or counted.
struct Stream<'a> {
    sink: &'a mut dyn Sink,
    limit: u64,
    ledger: Ledger,
    open: OpenStays,
    /// The first and last event time of the records that reach silver.
    times: Option<(i64, i64)>,
}

impl Stream<'_> {
    fn has_room(&self) -> bool {
        self.ledger.records_in < self.limit
    }

    fn send(&mut self, bytes: &[u8]) -> Result<bool> {
        if !self.has_room() {
            return Ok(false);
        }
        self.sink.send(bytes)?;
        self.ledger.records_in += 1;
        Ok(true)
    }

    /// A record that reaches silver (clean, or kept by a rule); `corrected`: its time is
    /// corrected to its receipt.
    fn clean(&mut self, emit: &Emit, bytes: &[u8], corrected: bool) -> Result<()> {
        if self.send(bytes)? {
            self.open.delivered(emit, corrected);
            let (lo, hi) = self.times.unwrap_or((emit.time, emit.time));
            self.times = Some((lo.min(emit.time), hi.max(emit.time)));
        }
        Ok(())
    }

    fn quarantined(&mut self, bytes: &[u8]) -> Result<()> {
        if self.send(bytes)? {
            self.ledger.quarantined += 1;
        }
        Ok(())
    }

    fn duplicate(&mut self, bytes: &[u8]) -> Result<()> {
        if self.send(bytes)? {
            self.ledger.duplicates += 1;
            *self
                .ledger
                .rules
                .entry(Defect::Duplicate.name().to_string())
                .or_default() += 1;
        }
        Ok(())
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
    use serde_json::Map;

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
            .with_defect_mode(DefectMode::Replace)
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
    fn the_history_reaches_until_and_a_quarantined_defect_is_resent_clean() {
        let until = 1_795_511_700_000_000;
        for events in [3_000, 30_000] {
            let mut sink = Memory::default();
            let ledger = Producer::new(events, Shape::Adt)
                .with_seed(5)
                .with_until(until)
                .with_dirty_rate(0.0)
                .unwrap()
                .with_defect_rate(Defect::UnknownHospital, 0.1)
                .unwrap()
                .with_lost_rate(0.01)
                .unwrap()
                .run(&mut sink)
                .unwrap();
            assert_eq!(sink.0.len() as u64, events);
            // The last events fall in the hour before `until`, whatever the count.
            let last = chrono::DateTime::parse_from_rfc3339(ledger.last_event.as_deref().unwrap())
                .unwrap()
                .timestamp_micros();
            assert!(last < until && until - last < HOUR, "{last}");
            // Each quarantined record is followed by its clean resend under a new event id.
            let quarantined = ledger.rules["unknown_hospital"];
            assert_eq!(ledger.quarantined, quarantined);
            assert!(quarantined > events / 20, "{quarantined}");
            let records: Vec<Map<String, Value>> = sink
                .0
                .iter()
                .map(|b| serde_json::from_slice(b).unwrap())
                .collect();
            let mut resent = 0;
            for pair in records.windows(2) {
                let bad = &pair[0];
                if bad["hospital_id"]
                    .as_i64()
                    .is_some_and(|h| (1..=7).contains(&h))
                {
                    continue;
                }
                let good = &pair[1];
                assert_eq!(bad["encounter_id"], good["encounter_id"]);
                assert_eq!(bad["event_type"], good["event_type"]);
                assert_ne!(bad["event_id"], good["event_id"]);
                resent += 1;
            }
            // The stream's very last record may be a defective one whose resend did not fit.
            assert!(quarantined - resent <= 1, "{quarantined} {resent}");
            // About 1% of the clean events were never sent, and the ledger says which.
            let lost: u64 = ledger.lost.values().sum();
            assert!(lost > events / 200 && lost < events / 50, "{lost}");
            assert!(ledger.lost.contains_key("DISCHARGE"), "{:?}", ledger.lost);
        }
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
