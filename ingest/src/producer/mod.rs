//! `patientflow produce`: simulated registration traffic for the reference network, dirty
//! data included, with a ledger of exactly what was injected.

mod defects;
mod kafka_sink;
mod ledger;
mod pace;
mod plan;
mod render;
mod simulate;
mod sink;
mod stream;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

pub use defects::Defect;
pub use kafka_sink::KafkaSink;
pub use ledger::{ExpectedOpenStays, Ledger};
pub use pace::Pace;
pub use sink::{FileSink, Paced, Sink};

use crate::error::{Error, Result};
use crate::reference::ReferenceData;
use ledger::OpenStays;
use plan::plan;
use render::{iso, messy, render};
use simulate::{StayKind, simulate};
use stream::Stream;

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
    pace: Option<Pace>,
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
            pace: None,
        }
    }

    /// Sends each record when `pace` says it is due (live production) instead of at once.
    pub fn with_pace(mut self, pace: Pace) -> Self {
        self.pace = Some(pace);
        self
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
            if let Some(pace) = &self.pace {
                pace.wait_for(emit.sort_key);
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
mod tests;
