//! Live production: records sent as their time comes, for a demo that moves while one
//! watches.

use std::time::{Duration, Instant};

/// When each record goes out. Records up to `replay_from` go at once (the history); those up
/// to `now` (the recent past) are replayed `speed` times faster than they happened; later ones
/// go as the clock reaches them. A record is never sent before its own time.
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
        let replay = micros(t.min(self.now) - self.replay_from).div_f64(self.speed);
        replay + micros(t - self.now)
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
    fn history_at_once_recent_past_faster_then_the_clock() {
        let s = 1_000_000;
        let p = Pace::new(0, 3600 * s, 60.0);
        assert_eq!(p.due(-5 * s), Duration::ZERO);
        assert_eq!(p.due(0), Duration::ZERO);
        assert_eq!(p.due(1800 * s), Duration::from_secs(30));
        assert_eq!(p.due(3600 * s), Duration::from_secs(60));
        assert_eq!(p.due(3700 * s), Duration::from_secs(160));
    }
}
