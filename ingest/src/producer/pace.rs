//! Live production: records sent as their time comes, for a demo that moves while one
//! watches.

use std::time::{Duration, Instant};

/// When each record goes out. Records up to `replay_from` go at once (the history); later ones
/// are replayed `speed` times faster than they happened until the replay has caught up with
/// the clock, then go as the clock reaches them: a record is never sent before its own time,
/// and once caught up (after `(now - replay_from) / (speed - 1)`) never after it either.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    started: Instant,
    replay_from: i64,
    now: i64,
    speed: f64,
}

impl Pace {
    /// Starts the clock now: `now` and `replay_from` are UTC microseconds.
    pub fn new(replay_from: i64, now: i64, speed: f64) -> Self {
        Self {
            started: Instant::now(),
            replay_from: replay_from.min(now),
            now,
            speed: speed.max(1.0),
        }
    }

    /// How long after the start a record of time `t` goes out.
    pub fn due(&self, t: i64) -> Duration {
        let micros = |us: i64| Duration::from_micros(us.max(0) as u64);
        if t <= self.replay_from {
            return Duration::ZERO;
        }
        let replay = micros(t - self.replay_from).div_f64(self.speed);
        replay.max(micros(t - self.now))
    }

    /// Sleeps until a record of time `t` is due.
    pub fn wait_for(&self, t: i64) {
        let due = self.started + self.due(t);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_at_once_recent_past_faster_until_it_meets_the_clock() {
        let s = 1_000_000;
        let p = Pace::new(0, 3600 * s, 60.0);
        assert_eq!(p.due(-5 * s), Duration::ZERO);
        assert_eq!(p.due(0), Duration::ZERO);
        assert_eq!(p.due(1800 * s), Duration::from_secs(30));
        assert_eq!(p.due(3600 * s), Duration::from_secs(60));
        // Still replaying: 61 s past the start, this record is a second old.
        assert_eq!(p.due(3660 * s), Duration::from_secs(61));
        // Caught up at 3600 · 60/59 s: from there on each record goes at its own time.
        assert_eq!(p.due(3662 * s), Duration::from_secs(62));
        assert_eq!(p.due(3700 * s), Duration::from_secs(100));
        assert_eq!(p.due(7200 * s), Duration::from_secs(3600));
    }
}
