//! What the registration systems send about each simulated stay, and when.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Shape;
use super::simulate::{Simulation, StayKind};

const HOUR: i64 = 3_600_000_000;

/// A record to emit: which stay, what happens, when.
#[derive(Debug, Clone)]
pub(crate) struct Emit {
    pub(crate) stay: usize,
    pub(crate) kind: &'static str,
    pub(crate) time: i64,
    pub(crate) discharge: Option<i64>,
    /// Sending order: the event time, later for the few that arrive late.
    pub(crate) sort_key: i64,
}

/// Every record of the simulation with an event time before `until`, in sending order.
pub(crate) fn plan(rng: &mut ChaCha8Rng, sim: &Simulation, shape: Shape, until: i64) -> Vec<Emit> {
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
        match (shape, s.kind) {
            // A flat record describes a stay: one that never began has none.
            (Shape::Flat, StayKind::LeftWithoutAdmission { .. }) => {}
            (Shape::Flat, StayKind::Admitted) => {
                push(rng, i, "FLAT", s.admission, Some(s.discharge));
                if rng.random_bool(0.05) {
                    // A correction: the stay's discharge was re-planned.
                    let later = s.discharge + rng.random_range(1..48) * HOUR;
                    let at = s.admission + rng.random_range(1..6) * HOUR;
                    push(rng, i, "FLAT_UPDATE", at, Some(later));
                }
            }
            (Shape::Adt, StayKind::LeftWithoutAdmission { discharged }) => {
                if let Some(a) = s.arrival {
                    push(rng, i, "ARRIVAL", a, None);
                }
                if discharged {
                    push(rng, i, "DISCHARGE", s.discharge, None);
                }
            }
            (Shape::Adt, StayKind::Admitted) => {
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
    out.sort_by_key(|e| e.sort_key);
    out
}
