//! The producer's ledger: what it sent, what it injected and lost, and which open stays it
//! expects to be long-open or stale at `--until` (contract §5.1), for tests to compare with
//! the pipeline's counts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Shape;
use super::plan::Emit;
use super::simulate::{Simulation, StayKind};
use crate::open_stays::{Freshness, StayLimits};
use crate::reference::ReferenceData;

/// What the producer injected, for checking the pipeline's quality counts.
#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    /// Seed used.
    pub seed: u64,
    /// Shape produced.
    pub shape: Shape,
    /// Upper bound of event times (RFC 3339).
    pub until: String,
    /// The earliest event time sent (RFC 3339).
    pub first_event: Option<String>,
    /// The latest event time sent (RFC 3339).
    pub last_event: Option<String>,
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
    /// Clean ADT events never sent (`--lost-rate`), by event type.
    pub lost: BTreeMap<String, u64>,
    /// Simulated stays behind the records (admitted ones).
    pub stays: u64,
    /// Simulated emergency-department encounters that left without an admission.
    pub left_without_admission: u64,
    /// Simulated patients.
    pub patients: u64,
    /// Per hospital and department, the open stays of the records sent that are long-open or
    /// stale at `until` (ADT only: a flat record's last event is its receipt).
    pub open_stays: Vec<ExpectedOpenStays>,
    /// Where the records went.
    pub outputs: Vec<String>,
}

/// Open stays the pipeline should find long-open or stale, in one department.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpectedOpenStays {
    /// Hospital number.
    pub hospital_id: i32,
    /// Canonical department (the stay's current one).
    pub department: String,
    /// Open and quiet for longer than `warn_after`, not stale.
    pub long_open: u64,
    /// Open and quiet for `stale_after` or longer.
    pub stale: u64,
}

/// What the pipeline will have seen of one stay, from the records sent.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    admitted: bool,
    discharged: bool,
    transferred: bool,
    /// A record whose time the pipeline corrects to its receipt (after `until`).
    corrected: bool,
    last_event: i64,
}

/// Follows the records sent, stay by stay.
#[derive(Debug, Default)]
pub(crate) struct OpenStays {
    seen: BTreeMap<usize, Seen>,
}

impl OpenStays {
    /// A record of `emit` reached silver; `corrected`: with its time set to its receipt.
    pub(crate) fn delivered(&mut self, emit: &Emit, corrected: bool) {
        let seen = self.seen.entry(emit.stay).or_default();
        match emit.kind {
            "ADMIT" => seen.admitted = true,
            "DISCHARGE" => seen.discharged = true,
            "TRANSFER" => seen.transferred = true,
            _ => {}
        }
        seen.corrected |= corrected;
        seen.last_event = seen.last_event.max(emit.time);
    }

    /// The long-open and stale stays at `until`, per hospital and department.
    pub(crate) fn expected(
        &self,
        sim: &Simulation,
        reference: &ReferenceData,
        until: i64,
    ) -> Vec<ExpectedOpenStays> {
        let mut out: BTreeMap<(i32, String), ExpectedOpenStays> = BTreeMap::new();
        for (&i, seen) in &self.seen {
            let stay = &sim.stays[i];
            // A corrected record's time is its receipt, after `until`: the stay is live.
            if stay.kind != StayKind::Admitted
                || !seen.admitted
                || seen.discharged
                || seen.corrected
            {
                continue;
            }
            let department = match stay.transfer {
                Some((_, to, _)) if seen.transferred => to,
                _ => stay.department,
            };
            let limits = limits(reference, stay.hospital_id, department);
            let counts = out
                .entry((stay.hospital_id, department.to_string()))
                .or_insert_with(|| ExpectedOpenStays {
                    hospital_id: stay.hospital_id,
                    department: department.to_string(),
                    ..ExpectedOpenStays::default()
                });
            match limits.classify(seen.last_event, until) {
                Freshness::Live => {}
                Freshness::LongOpen => counts.long_open += 1,
                Freshness::Stale => counts.stale += 1,
            }
        }
        out.into_values()
            .filter(|c| c.long_open + c.stale > 0)
            .collect()
    }
}

/// A department's limits as the reference file states them (its latest row that does), over
/// the contract's defaults.
fn limits(reference: &ReferenceData, hospital_id: i32, department: &str) -> StayLimits {
    let rows = reference
        .rows()
        .iter()
        .filter(|r| r.hospital_id == hospital_id && r.department == department);
    let stated = rows.fold((None, None), |(w, s), r| {
        (r.warn_after_hours.or(w), r.stale_after_hours.or(s))
    });
    StayLimits::resolve(department, stated, &BTreeMap::new())
}
