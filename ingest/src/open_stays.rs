//! Open stays that stopped reporting (contract §5.1): the per-department limits after which an
//! open stay is long-open (a warning) and stale (it leaves the census), and the rule itself.
//!
//! Limits come, most specific first, from the department reference file's optional
//! `warn_after_hours` / `stale_after_hours` columns, then from configuration
//! (`gold.open_stays.<Department>`), then from the contract's defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const HOUR: i64 = 3_600_000_000;
const DAY_HOURS: f64 = 24.0;

/// The contract's default limits (warn, stale) in days by canonical department.
const DEFAULT_DAYS: [(&[&str], f64, f64); 5] = [
    (&["Emergency"], 1.0, 3.0),
    (&["ICU", "Pediatrics"], 14.0, 60.0),
    (&["Surgery", "Cardiology"], 21.0, 60.0),
    (&["Maternity"], 7.0, 30.0),
    (&["Oncology"], 42.0, 120.0),
];

/// The default limits (warn, stale) in days of a department the contract does not name.
const OTHER_DAYS: (f64, f64) = (21.0, 60.0);

/// How long an open stay may go without an event before it is long-open, and stale.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StayLimits {
    /// Hours without an event after which an open stay is long-open (still counted).
    pub warn_after_hours: f64,
    /// Hours without an event after which an open stay is stale (left out of the census).
    pub stale_after_hours: f64,
}

impl StayLimits {
    /// The contract's defaults for a canonical department; 21 d / 60 d for one it does not name.
    pub fn default_for(department: &str) -> Self {
        let (warn_days, stale_days) = DEFAULT_DAYS
            .iter()
            .find(|(names, _, _)| names.contains(&department))
            .map_or(OTHER_DAYS, |(_, warn, stale)| (*warn, *stale));
        Self {
            warn_after_hours: warn_days * DAY_HOURS,
            stale_after_hours: stale_days * DAY_HOURS,
        }
    }

    /// The longest `stale_after` of the defaults, in microseconds.
    pub(crate) fn longest_default_stale_after() -> i64 {
        let days = DEFAULT_DAYS
            .iter()
            .map(|(_, _, stale)| *stale)
            .fold(OTHER_DAYS.1, f64::max);
        (days * DAY_HOURS * HOUR as f64) as i64
    }

    /// The limits of `department`: the reference file's values where it sets them, else the
    /// configured ones, else the defaults.
    pub fn resolve(
        department: &str,
        from_reference: (Option<f64>, Option<f64>),
        configured: &BTreeMap<String, StayLimits>,
    ) -> Self {
        let base = configured
            .get(department)
            .copied()
            .unwrap_or_else(|| Self::default_for(department));
        Self {
            warn_after_hours: from_reference.0.unwrap_or(base.warn_after_hours),
            stale_after_hours: from_reference.1.unwrap_or(base.stale_after_hours),
        }
    }

    /// `stale_after` in microseconds.
    pub(crate) fn stale_after(&self) -> i64 {
        (self.stale_after_hours * HOUR as f64) as i64
    }

    /// `warn_after` in microseconds.
    pub(crate) fn warn_after(&self) -> i64 {
        (self.warn_after_hours * HOUR as f64) as i64
    }

    /// How an open stay whose last event was at `last_event` stands at `t`.
    pub(crate) fn classify(&self, last_event: i64, t: i64) -> Freshness {
        let quiet = t - last_event;
        // Stale from `last event + stale_after` on (the census is half-open, as for a discharge).
        if quiet >= self.stale_after() {
            Freshness::Stale
        } else if quiet > self.warn_after() {
            Freshness::LongOpen
        } else {
            Freshness::Live
        }
    }
}

/// Where an open stay stands (contract §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Reporting within its department's `warn_after`.
    Live,
    /// Quiet for longer than `warn_after`: still counted everywhere.
    LongOpen,
    /// Quiet for longer than `stale_after`: out of the census from `last event + stale_after`.
    Stale,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract_and_the_reference_file_wins() {
        let ed = StayLimits::default_for("Emergency");
        assert_eq!((ed.warn_after_hours, ed.stale_after_hours), (24.0, 72.0));
        let onc = StayLimits::default_for("Oncology");
        assert_eq!(
            (onc.warn_after_hours, onc.stale_after_hours),
            (1008.0, 2880.0)
        );
        let configured = BTreeMap::from([(
            "ICU".to_string(),
            StayLimits {
                warn_after_hours: 48.0,
                stale_after_hours: 96.0,
            },
        )]);
        let icu = StayLimits::resolve("ICU", (None, Some(120.0)), &configured);
        assert_eq!((icu.warn_after_hours, icu.stale_after_hours), (48.0, 120.0));
        // Stale from `last event + stale_after` on; long-open once past `warn_after`.
        assert_eq!(ed.classify(0, 72 * HOUR - 1), Freshness::LongOpen);
        assert_eq!(ed.classify(0, 72 * HOUR), Freshness::Stale);
        assert_eq!(ed.classify(0, 24 * HOUR), Freshness::Live);
        assert_eq!(ed.classify(0, 24 * HOUR + 1), Freshness::LongOpen);
    }
}
