//! Cron schedules in an IANA time zone, and which occurrences are due after downtime.
//!
//! Daylight saving time follows croner (the Open Cron Pattern Specification, as Vixie cron
//! does): a fixed-time job whose wall-clock time a spring-forward skips runs once, at the first
//! instant after the gap; on a fall-back day it runs once, at the first of the repeated times.
//! Interval jobs (`*/15 * * * *`) skip the gap and run in both halves of the overlap.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::Deserialize;

use crate::error::{Error, Result};

/// A cron pattern evaluated in a time zone.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    cron: Cron,
    tz: Tz,
    pattern: String,
}

impl Schedule {
    /// A five-field cron pattern (minute hour day-of-month month day-of-week, or `@daily` and
    /// the like) in `tz`.
    pub(crate) fn parse(pattern: &str, tz: Tz) -> Result<Self> {
        let cron = Cron::from_str(pattern).map_err(|e| {
            Error::Jobs(format!(
                "schedule `{pattern}`: {e}; give five cron fields, e.g. `0 2 * * *` for 02:00 daily"
            ))
        })?;
        Ok(Self {
            cron,
            tz,
            pattern: pattern.to_string(),
        })
    }

    /// The pattern as written.
    pub(crate) fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The time zone the pattern is read in.
    pub(crate) fn tz(&self) -> Tz {
        self.tz
    }

    /// The first occurrence strictly after `t`.
    pub(crate) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The next `n` occurrences strictly after `t`.
    pub(crate) fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(t), |prev| self.next_after(*prev))
            .take(n)
            .collect()
    }

    /// The occurrences in `(after, upto]`, oldest first.
    pub(crate) fn between(&self, after: DateTime<Utc>, upto: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(after), |prev| self.next_after(*prev))
            .take_while(|t| *t <= upto)
            .collect()
    }
}

/// What a scheduler does with the occurrences it missed while it was not running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Catchup {
    /// Skip them: the next run is the next occurrence.
    None,
    /// Run the most recent one only (the default: the data of the latest run covers the rest).
    #[default]
    Latest,
    /// Run each of them, oldest first, at most `max_catchup` (the most recent ones).
    All,
}

/// Why a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Its occurrence came while the scheduler ran.
    Schedule,
    /// Its occurrence came while the scheduler was down, and the catch-up policy runs it.
    Catchup,
    /// A file arrived in the job's folder.
    File,
    /// `POST /api/v1/pipelines/{job}/runs` (Azure Data Factory, an operator).
    Api,
    /// A stream's (re)start.
    Continuous,
}

impl Trigger {
    const ALL: [Trigger; 5] = [
        Trigger::Schedule,
        Trigger::Catchup,
        Trigger::File,
        Trigger::Api,
        Trigger::Continuous,
    ];

    /// As recorded in `ops/pipeline_runs`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Catchup => "catch-up",
            Trigger::File => "file",
            Trigger::Api => "api",
            Trigger::Continuous => "continuous",
        }
    }

    /// The trigger recorded as `text`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether it is an occurrence of the job's schedule (and so has an idempotency key of
    /// its own scheduled time).
    pub(crate) fn is_scheduled(self) -> bool {
        matches!(self, Trigger::Schedule | Trigger::Catchup)
    }
}

/// An occurrence the scheduler runs or skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    /// The occurrence.
    pub(crate) scheduled_for: DateTime<Utc>,
    /// How it starts, or `None` when the catch-up policy skips it.
    pub(crate) trigger: Option<Trigger>,
}

/// The occurrences of `schedule` in `(last, now]` and what becomes of each under `policy`:
/// an occurrence younger than `grace` is on time and always runs; the older ones were missed
/// and run or are skipped as the policy says (`max_catchup` caps `all`). `last` is the newest
/// occurrence already run or skipped; with none (a job's first start) nothing was missed.
pub(crate) fn due(
    schedule: &Schedule,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
    policy: Catchup,
    max_catchup: usize,
) -> Vec<Due> {
    let Some(last) = last else {
        return schedule
            .between(now - grace, now)
            .into_iter()
            .map(|t| Due {
                scheduled_for: t,
                trigger: Some(Trigger::Schedule),
            })
            .collect();
    };
    let occurrences = schedule.between(last, now);
    let on_time = |t: &DateTime<Utc>| now - *t < grace;
    let missed = occurrences.iter().filter(|t| !on_time(t)).count();
    occurrences
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let trigger = if on_time(t) {
                Some(Trigger::Schedule)
            } else {
                let runs = match policy {
                    Catchup::None => false,
                    Catchup::Latest => i + 1 == missed,
                    Catchup::All => i + max_catchup.max(1) >= missed,
                };
                runs.then_some(Trigger::Catchup)
            };
            Due {
                scheduled_for: *t,
                trigger,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn chicago(pattern: &str) -> Schedule {
        Schedule::parse(pattern, chrono_tz::America::Chicago).unwrap()
    }

    #[test]
    fn a_daily_0200_job_runs_once_after_the_spring_forward_gap_and_once_on_fall_back() {
        let s = chicago("0 2 * * *");
        // 14 March 2027: 02:00 CST does not exist; the run is at 03:00 CDT (08:00 UTC).
        let spring = s.upcoming(utc("2027-03-12T12:00:00Z"), 4);
        assert_eq!(
            spring,
            [
                utc("2027-03-13T08:00:00Z"),
                utc("2027-03-14T08:00:00Z"),
                utc("2027-03-15T07:00:00Z"),
                utc("2027-03-16T07:00:00Z"),
            ]
        );
        // 7 November 2027: 02:00 comes once, in CST (08:00 UTC).
        let fall = s.upcoming(utc("2027-11-05T12:00:00Z"), 3);
        assert_eq!(
            fall,
            [
                utc("2027-11-06T07:00:00Z"),
                utc("2027-11-07T08:00:00Z"),
                utc("2027-11-08T08:00:00Z"),
            ]
        );
    }

    #[test]
    fn a_job_in_the_repeated_hour_runs_once_and_an_interval_job_in_both_halves() {
        let once = chicago("30 1 * * *");
        let runs = once.between(utc("2027-11-07T05:00:00Z"), utc("2027-11-07T09:00:00Z"));
        // 01:30 CDT (06:30 UTC) only, not 01:30 CST (07:30 UTC) too.
        assert_eq!(runs, [utc("2027-11-07T06:30:00Z")]);
        let hourly = chicago("0 * * * *");
        let runs = hourly.between(utc("2027-11-07T05:30:00Z"), utc("2027-11-07T08:30:00Z"));
        // 01:00 CDT, 01:00 CST, 02:00 CST: every real hour.
        assert_eq!(
            runs,
            [
                utc("2027-11-07T06:00:00Z"),
                utc("2027-11-07T07:00:00Z"),
                utc("2027-11-07T08:00:00Z"),
            ]
        );
        let spring = hourly.between(utc("2027-03-14T06:30:00Z"), utc("2027-03-14T09:30:00Z"));
        // 00:00 CST … then 03:00 CDT: the hour the clock skips has no run.
        assert_eq!(
            spring,
            [
                utc("2027-03-14T07:00:00Z"),
                utc("2027-03-14T08:00:00Z"),
                utc("2027-03-14T09:00:00Z"),
            ]
        );
        assert_eq!(
            chrono_tz::America::Chicago
                .from_utc_datetime(&spring[1].naive_utc())
                .to_rfc3339(),
            "2027-03-14T03:00:00-05:00"
        );
    }

    #[test]
    fn catch_up_after_a_three_day_outage_follows_the_policy() {
        let s = chicago("0 2 * * *");
        let last = utc("2027-06-01T07:00:00Z"); // 1 June 02:00 CDT ran.
        let now = utc("2027-06-04T12:00:00Z"); // back up on 4 June, 07:00 CDT.
        let grace = chrono::Duration::minutes(5);
        let runs = |policy, cap| -> Vec<(DateTime<Utc>, Option<Trigger>)> {
            due(&s, Some(last), now, grace, policy, cap)
                .into_iter()
                .map(|d| (d.scheduled_for, d.trigger))
                .collect()
        };
        let (d2, d3, d4) = (
            utc("2027-06-02T07:00:00Z"),
            utc("2027-06-03T07:00:00Z"),
            utc("2027-06-04T07:00:00Z"),
        );
        let c = Some(Trigger::Catchup);
        assert_eq!(
            runs(Catchup::None, 10),
            [(d2, None), (d3, None), (d4, None)]
        );
        assert_eq!(runs(Catchup::Latest, 10), [(d2, None), (d3, None), (d4, c)]);
        assert_eq!(runs(Catchup::All, 10), [(d2, c), (d3, c), (d4, c)]);
        assert_eq!(runs(Catchup::All, 2), [(d2, None), (d3, c), (d4, c)]);
        // Back up at 02:01 on the fourth: that day's run is on time under every policy.
        let now = utc("2027-06-04T07:01:00Z");
        let s4 = due(&s, Some(last), now, grace, Catchup::None, 10);
        assert_eq!(s4.last().unwrap().trigger, Some(Trigger::Schedule));
        // A first start has missed nothing.
        assert!(
            due(
                &s,
                None,
                utc("2027-06-04T12:00:00Z"),
                grace,
                Catchup::All,
                10
            )
            .is_empty()
        );
    }

    #[test]
    fn a_bad_pattern_says_what_a_good_one_looks_like() {
        let e = Schedule::parse("every day", chrono_tz::UTC).unwrap_err();
        assert!(e.to_string().contains("five cron fields"), "{e}");
    }
}
