//! The jobs a `patientflow run` process runs, as declared in the config (`[run]` and
//! `[[jobs]]`), checked before anything starts.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use super::schedule::{Catchup, Schedule};
use crate::error::{Error, Result};

/// `[run]`: what every job shares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunConfig {
    /// IANA time zone of the schedules (default UTC), e.g. `America/Chicago`.
    pub(crate) timezone: Option<String>,
    /// Seconds an occurrence may be late and still count as on time, not missed (default 300).
    pub(crate) grace_seconds: Option<u64>,
    /// How often, in milliseconds, the folders of `on_file` jobs are looked at (default 2000).
    pub(crate) poll_ms: Option<u64>,
}

/// One `[[jobs]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobConfig {
    /// Unique name: the REST path, the alert key and the run history use it.
    pub(crate) name: String,
    pub(crate) kind: JobKind,
    /// Cron pattern (five fields) in the job's time zone.
    pub(crate) schedule: Option<String>,
    /// Overrides `[run] timezone` for this job.
    pub(crate) timezone: Option<String>,
    /// Source: a landing folder, or for `stream` also `kafka://…` / `eventhubs://…`.
    pub(crate) from: Option<String>,
    /// Also run when a file arrives in `from` (batch kinds).
    #[serde(default)]
    pub(crate) on_file: bool,
    /// Attempts after the first failed one (default 2).
    pub(crate) retries: Option<u32>,
    /// First retry delay, seconds; doubled per attempt, with jitter (default 30).
    pub(crate) retry_backoff_seconds: Option<u64>,
    /// A run still going after this long is cancelled and fails (default 3600).
    pub(crate) timeout_seconds: Option<u64>,
    /// Missed occurrences after downtime: `none`, `latest` (default) or `all`.
    pub(crate) catchup: Option<Catchup>,
    /// With `catchup = "all"`: the most missed occurrences run (default 10).
    pub(crate) max_catchup: Option<usize>,
    /// An occurrence due while the last run still runs: `queue` (once; default) or `skip`.
    pub(crate) overlap: Option<Overlap>,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobKind {
    /// `ingest --follow`: runs continuously, restarted with backoff when it stops.
    Stream,
    /// `ingest` of a landing folder once, then gold.
    Ingest,
    /// `ingest batch` of department reference files.
    Departments,
    /// `ingest batch` of EHR patient extracts.
    Ehr,
    /// `gold refresh`.
    Gold,
    /// `maintain`.
    Maintain,
}

impl JobKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobKind::Stream => "stream",
            JobKind::Ingest => "ingest",
            JobKind::Departments => "departments",
            JobKind::Ehr => "ehr",
            JobKind::Gold => "gold",
            JobKind::Maintain => "maintain",
        }
    }

    fn reads_a_source(self) -> bool {
        !matches!(self, JobKind::Gold | JobKind::Maintain)
    }
}

/// A run due while the job's last run is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Overlap {
    /// Wait for it, then run once (however many occurrences came meanwhile).
    #[default]
    Queue,
    /// Do not run it.
    Skip,
}

/// A checked job.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) name: String,
    pub(crate) kind: JobKind,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) from: Option<String>,
    pub(crate) on_file: bool,
    pub(crate) retries: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) timeout: Duration,
    pub(crate) catchup: Catchup,
    pub(crate) max_catchup: usize,
    pub(crate) overlap: Overlap,
}

impl Job {
    /// What starts it, in words.
    pub(crate) fn triggers(&self) -> String {
        let mut t = Vec::new();
        if self.kind == JobKind::Stream {
            t.push("continuous (restarted with backoff)".to_string());
        }
        if let Some(s) = &self.schedule {
            t.push(format!("cron `{}` in {}", s.pattern(), s.tz()));
        }
        if self.on_file {
            t.push("a file arriving in its folder".to_string());
        }
        t.join(", ")
    }
}

/// Parses an IANA time zone name.
fn zone(name: &str, what: &str) -> Result<Tz> {
    name.parse().map_err(|_| {
        Error::Jobs(format!(
            "{what}: unknown time zone `{name}`; use an IANA name such as `America/Chicago`"
        ))
    })
}

/// Checks the `[[jobs]]` of a config against each other and `[run]`.
pub(crate) fn jobs(run: &RunConfig, configs: &[JobConfig]) -> Result<Vec<Job>> {
    let default_tz = match &run.timezone {
        Some(name) => zone(name, "[run] timezone")?,
        None => Tz::UTC,
    };
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(configs.len());
    for c in configs {
        let fail = |why: String| Err(Error::Jobs(format!("job `{}`: {why}", c.name)));
        let valid_name = !c.name.is_empty()
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !valid_name {
            return fail("a name is letters, digits, `-` and `_` (it is part of a URL)".into());
        }
        if !names.insert(c.name.clone()) {
            return fail("two jobs have this name".into());
        }
        let tz = match &c.timezone {
            Some(name) => zone(name, &format!("job `{}`", c.name))?,
            None => default_tz,
        };
        let schedule = match &c.schedule {
            Some(p) => Some(
                Schedule::parse(p, tz)
                    .map_err(|e| Error::Jobs(format!("job `{}`: {e}", c.name)))?,
            ),
            None => None,
        };
        let kind = c.kind.as_str();
        match (c.kind.reads_a_source(), &c.from) {
            (true, None) => return fail(format!("kind `{kind}` needs `from` (its source)")),
            (false, Some(_)) => {
                return fail(format!("kind `{kind}` reads no source: drop `from`"));
            }
            _ => {}
        }
        if c.kind == JobKind::Stream && (schedule.is_some() || c.on_file) {
            return fail("a stream runs continuously: drop `schedule` and `on_file`".into());
        }
        if c.on_file
            && !matches!(
                c.kind,
                JobKind::Ingest | JobKind::Departments | JobKind::Ehr
            )
        {
            return fail(format!(
                "`on_file` is for jobs that read files, not `{kind}`"
            ));
        }
        if c.max_catchup == Some(0) {
            return fail("`max_catchup` is at least 1 (use `catchup = \"none\"` to skip)".into());
        }
        out.push(Job {
            name: c.name.clone(),
            kind: c.kind,
            schedule,
            from: c.from.clone(),
            on_file: c.on_file,
            retries: c.retries.unwrap_or(2),
            retry_backoff: Duration::from_secs(c.retry_backoff_seconds.unwrap_or(30)),
            timeout: Duration::from_secs(c.timeout_seconds.unwrap_or(3600).max(1)),
            catchup: c.catchup.unwrap_or_default(),
            max_catchup: c.max_catchup.unwrap_or(10),
            overlap: c.overlap.unwrap_or_default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Job>> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            run: RunConfig,
            #[serde(default)]
            jobs: Vec<JobConfig>,
        }
        let f: File = toml::from_str(text).map_err(|e| Error::Jobs(e.to_string()))?;
        jobs(&f.run, &f.jobs)
    }

    #[test]
    fn jobs_take_the_run_time_zone_and_defaults() {
        let jobs = parse(
            "[run]\ntimezone = \"America/Chicago\"\n\
             [[jobs]]\nname = \"ehr-daily\"\nkind = \"ehr\"\nfrom = \"landing/ehr\"\n\
             schedule = \"0 2 * * *\"\non_file = true\n\
             [[jobs]]\nname = \"adt\"\nkind = \"stream\"\nfrom = \"kafka://127.0.0.1:9092/adt\"\n",
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        let ehr = &jobs[0];
        assert_eq!(
            ehr.schedule.as_ref().unwrap().tz(),
            chrono_tz::America::Chicago
        );
        assert_eq!(
            (ehr.retries, ehr.catchup, ehr.overlap),
            (2, Catchup::Latest, Overlap::Queue)
        );
        assert!(
            ehr.triggers().contains("a file arriving"),
            "{}",
            ehr.triggers()
        );
        assert_eq!(jobs[1].triggers(), "continuous (restarted with backoff)");
    }

    #[test]
    fn contradictions_are_refused_with_the_job_named() {
        let cases = [
            (
                "name = \"g\"\nkind = \"gold\"\nfrom = \"x\"",
                "reads no source",
            ),
            ("name = \"e\"\nkind = \"ehr\"", "needs `from`"),
            (
                "name = \"s\"\nkind = \"stream\"\nfrom = \"x\"\nschedule = \"* * * * *\"",
                "continuously",
            ),
            ("name = \"a b\"\nkind = \"gold\"", "part of a URL"),
            (
                "name = \"t\"\nkind = \"gold\"\ntimezone = \"Mars/Olympus\"",
                "unknown time zone",
            ),
            (
                "name = \"c\"\nkind = \"gold\"\nschedule = \"61 * * * *\"",
                "five cron fields",
            ),
            (
                "name = \"m\"\nkind = \"maintain\"\non_file = true",
                "`on_file`",
            ),
        ];
        for (job, expected) in cases {
            let err = parse(&format!("[[jobs]]\n{job}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{job}: {err}");
        }
        let twice =
            "[[jobs]]\nname = \"g\"\nkind = \"gold\"\n[[jobs]]\nname = \"g\"\nkind = \"gold\"\n";
        assert!(parse(twice).unwrap_err().to_string().contains("two jobs"));
    }
}
