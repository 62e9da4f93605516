//! A discrete-event simulation of the reference network: arrivals, admissions bounded by free
//! beds (a full ward's patients wait for one, at most six hours, or are diverted), transfers and
//! discharges with per-department length-of-stay distributions, and emergency-department
//! arrivals that leave without being admitted.
//!
//! Arrival rates aim each department's occupancy, transfers in included, at 72–88 % of its
//! beds; the simulation starts two weeks before the records it is asked for, so that wards are
//! full by then.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::reference::ReferenceData;

const HOUR: i64 = 3_600_000_000;
const MINUTE: i64 = 60_000_000;
/// Simulated time before the window asked for, in which the wards fill up.
const WARM_UP: i64 = 14 * 24 * HOUR;
/// The longest a patient waits for a bed: past it a full ward's next patients are diverted to
/// another hospital, as a network does on ambulance diversion (without it, a ward the flu
/// season fills queues without bound, and emergency waits grow to days).
const MAX_BOARDING: i64 = 6 * HOUR;
/// Share of stays transferred, and the mean share of the stay spent after the transfer.
const TRANSFER_SHARE: f64 = 0.10;
const AFTER_TRANSFER: f64 = 0.55;
/// Share of emergency-department arrivals that leave without being admitted, and the share
/// of those whose registration system sends a `DISCHARGE`.
const LEFT_WITHOUT_ADMISSION: f64 = 0.03;
const LEFT_WITH_DISCHARGE: f64 = 0.5;

/// Median length of stay (hours) and log-normal spread per department.
fn los_profile(department: &str) -> (f64, f64) {
    match department {
        "Emergency" => (6.0, 0.6),
        "Surgery" => (70.0, 0.7),
        "ICU" => (90.0, 0.6),
        "Pediatrics" => (45.0, 0.6),
        "Maternity" => (50.0, 0.4),
        "Oncology" => (110.0, 0.6),
        "Cardiology" => (80.0, 0.6),
        _ => (48.0, 0.6),
    }
}

/// Where transfers out of a department go.
fn transfer_target(department: &str) -> &'static str {
    match department {
        "ICU" => "Cardiology",
        "Surgery" => "ICU",
        "Cardiology" => "ICU",
        "Emergency" => "Surgery",
        "Oncology" => "ICU",
        "Maternity" => "Surgery",
        _ => "ICU",
    }
}

/// A simulated patient.
#[derive(Debug, Clone)]
pub(crate) struct Patient {
    pub(crate) id: String,
    pub(crate) gender: &'static str,
    /// Age at the start of the window.
    pub(crate) age: i64,
    pub(crate) insurance: &'static str,
}

/// One simulated stay.
#[derive(Debug, Clone)]
pub(crate) struct Stay {
    pub(crate) encounter_id: String,
    pub(crate) patient: usize,
    pub(crate) hospital_id: i32,
    pub(crate) department: &'static str,
    pub(crate) bed_id: i64,
    pub(crate) arrival: Option<i64>,
    pub(crate) admission: i64,
    pub(crate) discharge: i64,
    pub(crate) transfer: Option<(i64, &'static str, i64)>,
    pub(crate) triage: i64,
    pub(crate) kind: StayKind,
}

/// Whether an encounter became a stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StayKind {
    /// Admitted (the usual case).
    Admitted,
    /// Registered at the emergency department and left at `discharge` without an admission;
    /// `discharged`: the registration system sends a `DISCHARGE` for it.
    LeftWithoutAdmission { discharged: bool },
}

/// Canonical departments of the simulation, which must exist in the reference data.
pub(crate) use crate::reference::CANONICAL_DEPARTMENTS as DEPARTMENTS;

fn uuid(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    // Box–Muller for a standard normal.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    median * (sigma * z).exp()
}

/// The simulated network over a window.
#[derive(Debug)]
pub(crate) struct Simulation {
    pub(crate) patients: Vec<Patient>,
    pub(crate) stays: Vec<Stay>,
}

/// Seasonal surge multiplier: flu season (December–February) brings 10% more arrivals.
fn surge(t: i64, flu_season: bool) -> f64 {
    if !flu_season {
        return 1.0;
    }
    let month =
        chrono::DateTime::from_timestamp_micros(t).map_or(1, |d| chrono::Datelike::month(&d));
    if matches!(month, 12 | 1 | 2) {
        1.1
    } else {
        1.0
    }
}

fn transfers(department: &str) -> bool {
    department != "Pediatrics"
}

/// Arrivals per hour for each department such that its occupancy, own stays (less the time
/// after a transfer out) plus stays transferred in, is near its target share of beds.
fn arrival_rates(depts: &[(i32, &'static str, i64)]) -> Vec<f64> {
    let mean_los = |d: &str| {
        let (median, sigma) = los_profile(d);
        median * (sigma * sigma / 2.0).exp()
    };
    let out_share = |d: &str| {
        if transfers(d) {
            TRANSFER_SHARE * AFTER_TRANSFER
        } else {
            0.0
        }
    };
    let target = |(h, _, cap): &(i32, &str, i64)| (0.72 + 0.04 * f64::from(h % 5)) * *cap as f64;
    let mut rates: Vec<f64> = depts.iter().map(|d| target(d) / mean_los(d.1)).collect();
    // A few rounds of fixed point: transfer targets form cycles (ICU ⇄ Cardiology).
    for _ in 0..8 {
        let inbound: Vec<f64> = depts
            .iter()
            .map(|(h, d, _)| {
                depts
                    .iter()
                    .zip(&rates)
                    .filter(|((sh, sd, _), _)| {
                        sh == h && transfers(sd) && transfer_target(sd) == *d
                    })
                    .map(|((_, sd, _), r)| r * out_share(sd) * mean_los(sd))
                    .sum()
            })
            .collect();
        rates = depts
            .iter()
            .zip(&inbound)
            .map(|(d, inbound)| {
                let own = (target(d) - inbound).max(0.2 * target(d));
                own / (mean_los(d.1) * (1.0 - out_share(d.1)))
            })
            .collect();
    }
    rates
}

/// Simulates `stays_wanted` stays (about) ending at `until` (UTC micros), after a warm-up.
pub(crate) fn simulate(
    rng: &mut ChaCha8Rng,
    reference: &ReferenceData,
    stays_wanted: usize,
    until: i64,
    flu_season: bool,
) -> Simulation {
    let depts: Vec<(i32, &'static str, i64)> = reference
        .rows()
        .iter()
        .filter_map(|r| {
            DEPARTMENTS
                .iter()
                .find(|d| **d == r.department)
                .map(|d| (r.hospital_id, *d, i64::from(r.bed_capacity)))
        })
        .collect();
    let rates = arrival_rates(&depts);
    let per_hour: f64 = rates.iter().sum();
    let window = ((stays_wanted as f64 / per_hour).ceil() as i64).max(24) * HOUR;
    let start = until - window - WARM_UP;

    let mut patients: Vec<Patient> = Vec::new();
    let mut stays = Vec::with_capacity(stays_wanted + stays_wanted / 10);
    for ((hospital_id, department, capacity), rate) in depts.iter().zip(&rates) {
        let (median, sigma) = los_profile(department);
        let bed_base = i64::from(*hospital_id) * 1000
            + 100
                * DEPARTMENTS
                    .iter()
                    .position(|d| d == department)
                    .unwrap_or(0) as i64;
        let mut free: Vec<i64> = (1..=*capacity).rev().map(|b| bed_base + b).collect();
        let mut busy: BinaryHeap<Reverse<(i64, i64)>> = BinaryHeap::new();
        let mut t = start;
        loop {
            let gap_h =
                -rng.random_range(f64::EPSILON..1.0f64).ln() / (rate * surge(t, flu_season));
            t += (gap_h * HOUR as f64) as i64;
            if t >= until {
                break;
            }
            if *department == "Emergency" && rng.random_bool(LEFT_WITHOUT_ADMISSION) {
                let left = t + (lognormal(rng, 120.0, 0.5) * MINUTE as f64) as i64;
                let patient = pick_patient(rng, &mut patients, department);
                stays.push(Stay {
                    encounter_id: uuid(rng),
                    patient,
                    hospital_id: *hospital_id,
                    department,
                    bed_id: 0,
                    arrival: Some(t),
                    admission: left,
                    discharge: left,
                    transfer: None,
                    triage: rng.random_range(1..=5),
                    kind: StayKind::LeftWithoutAdmission {
                        discharged: rng.random_bool(LEFT_WITH_DISCHARGE),
                    },
                });
                continue;
            }
            while let Some(Reverse((end, bed))) = busy.peek().copied() {
                if end > t {
                    break;
                }
                busy.pop();
                free.push(bed);
            }
            // No free bed: the patient waits for the next discharge, or past MAX_BOARDING is
            // diverted to a hospital with room (and is not this department's patient).
            let (admission, bed) = match free.pop() {
                Some(bed) => (t, bed),
                None => {
                    let Some(Reverse((end, bed))) = busy.peek().copied() else {
                        break;
                    };
                    let admission = end.max(t) + rng.random_range(5..45) * MINUTE;
                    if admission - t > MAX_BOARDING {
                        continue;
                    }
                    busy.pop();
                    (admission, bed)
                }
            };
            let los = lognormal(rng, median, sigma).clamp(0.5, 60.0 * 24.0);
            let discharge = admission + (los * HOUR as f64) as i64;
            busy.push(Reverse((discharge, bed)));
            let via_ed = *department == "Emergency" || rng.random_bool(0.35);
            let arrival = via_ed.then(|| {
                let wait = lognormal(rng, 95.0, 0.5) * MINUTE as f64;
                t.min(admission) - wait as i64
            });
            let transfer = (transfers(department) && rng.random_bool(TRANSFER_SHARE)).then(|| {
                let at = admission
                    + ((discharge - admission) as f64 * rng.random_range(0.2..0.7)) as i64;
                let to = transfer_target(department);
                let to_base = i64::from(*hospital_id) * 1000
                    + 100 * DEPARTMENTS.iter().position(|d| *d == to).unwrap_or(0) as i64;
                (at, to, to_base + rng.random_range(1..=20))
            });
            let patient = pick_patient(rng, &mut patients, department);
            stays.push(Stay {
                encounter_id: uuid(rng),
                patient,
                hospital_id: *hospital_id,
                department,
                bed_id: bed,
                arrival,
                admission,
                discharge,
                transfer,
                triage: rng.random_range(1..=5),
                kind: StayKind::Admitted,
            });
        }
    }
    admit_transfers(&mut stays, &depts);
    Simulation { patients, stays }
}

/// Keeps a transfer only if the target department has a bed for it when it happens: its own
/// stays (bounded by its beds) plus the transfers it took in so far must leave one free.
/// Otherwise the patient stays where they are.
fn admit_transfers(stays: &mut [Stay], depts: &[(i32, &'static str, i64)]) {
    for &(hospital, department, capacity) in depts {
        // (time, +1 own arrival / -1 departure / 0 transfer candidate, stay)
        let mut events: Vec<(i64, i8, usize)> = Vec::new();
        for (i, s) in stays.iter().enumerate() {
            if s.hospital_id != hospital || s.kind != StayKind::Admitted {
                continue;
            }
            if s.department == department {
                events.push((s.admission, 1, i));
                events.push((s.discharge, -1, i));
            }
            if let Some((at, to, _)) = s.transfer
                && to == department
            {
                events.push((at, 0, i));
            }
        }
        // Departures first at equal times: a bed freed at t can be taken at t.
        events.sort_by_key(|&(t, kind, _)| (t, kind != -1));
        let mut departures: BinaryHeap<Reverse<i64>> = BinaryHeap::new();
        let mut present = 0i64;
        for (t, kind, i) in events {
            while let Some(Reverse(end)) = departures.peek().copied() {
                if end > t {
                    break;
                }
                departures.pop();
                present -= 1;
            }
            match kind {
                1 => present += 1,
                -1 => present -= 1,
                _ if present < capacity => {
                    present += 1;
                    departures.push(Reverse(stays[i].discharge));
                }
                _ => stays[i].transfer = None,
            }
        }
    }
}

fn pick_patient(rng: &mut ChaCha8Rng, patients: &mut Vec<Patient>, department: &str) -> usize {
    let adult = !matches!(department, "Pediatrics" | "Maternity");
    if adult && patients.len() > 100 && rng.random_bool(0.2) {
        let i = rng.random_range(0..patients.len());
        if patients[i].age >= 18 {
            return i;
        }
    }
    let (gender, age) = match department {
        "Pediatrics" => (
            if rng.random_bool(0.5) {
                "Female"
            } else {
                "Male"
            },
            rng.random_range(0..18),
        ),
        "Maternity" => ("Female", rng.random_range(18..45)),
        _ => {
            let g = if rng.random_bool(0.51) {
                "Female"
            } else {
                "Male"
            };
            let age = (lognormal(rng, 58.0, 0.35) as i64).clamp(18, 104);
            (g, age)
        }
    };
    const INSURANCE: [&str; 4] = ["Medicare", "Medicaid", "Private", "Uninsured"];
    patients.push(Patient {
        id: uuid(rng),
        gender,
        age,
        insurance: INSURANCE[rng.random_range(0..INSURANCE.len())],
    });
    patients.len() - 1
}
