//! `patientflow run`: the jobs of the config. `--check` validates them and prints when each
//! schedule fires next, in its own zone and in UTC.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::automation::{self, Job, JobKind};
use crate::cli::RunArgs;
use crate::config::Config;
use crate::error::{Error, Result};

pub(crate) fn run(args: RunArgs, config: &Config) -> Result<()> {
    let jobs = automation::jobs(&config.run, &config.jobs)?;
    if !args.check {
        return Err(Error::InvalidArgument(
            "this build of `patientflow run` only checks a config: run `patientflow run --check`; \
             until the scheduler loop lands, drive the commands from Azure Data Factory or cron"
                .into(),
        ));
    }
    if jobs.is_empty() {
        return Err(Error::Jobs(
            "the config declares no `[[jobs]]`; deploy/patientflow.toml is a complete example"
                .into(),
        ));
    }
    let after = args.after.unwrap_or_else(Utc::now);
    let grace = chrono::Duration::seconds(config.run.grace_seconds.unwrap_or(300) as i64);
    print!(
        "{}",
        report(&jobs, after, args.count, args.down_since, grace)
    );
    Ok(())
}

/// What `run --check` prints.
fn report(
    jobs: &[Job],
    after: DateTime<Utc>,
    count: usize,
    down_since: Option<DateTime<Utc>>,
    grace: chrono::Duration,
) -> String {
    let mut out = format!("config OK: {} job(s)\n", jobs.len());
    for job in jobs {
        let _ = write!(out, "\n{} ({})", job.name, job.kind.as_str());
        if let Some(from) = &job.from {
            let _ = write!(out, " from {from}");
        }
        let _ = writeln!(out, "\n  triggers: {}", job.triggers());
        if job.kind != JobKind::Stream {
            let _ = writeln!(
                out,
                "  retries {} (first after {} s, doubling, with jitter) · timeout {} s · catch-up {} (at most {}) · overlap {}",
                job.retries,
                job.retry_backoff.as_secs(),
                job.timeout.as_secs(),
                format!("{:?}", job.catchup).to_lowercase(),
                job.max_catchup,
                format!("{:?}", job.overlap).to_lowercase(),
            );
        }
        let Some(s) = &job.schedule else {
            continue;
        };
        let local = |t: DateTime<Utc>| {
            format!(
                "{} ({})",
                t.with_timezone(&s.tz()).format("%Y-%m-%d %H:%M %Z"),
                t.format("%Y-%m-%dT%H:%MZ")
            )
        };
        for (i, t) in s.upcoming(after, count).into_iter().enumerate() {
            let label = if i == 0 { "next:" } else { "     " };
            let _ = writeln!(out, "  {label} {}", local(t));
        }
        let Some(since) = down_since else {
            continue;
        };
        let due = automation::due(s, Some(since), after, grace, job.catchup, job.max_catchup);
        let (runs, skipped): (Vec<_>, Vec<_>) = due.iter().partition(|d| d.trigger.is_some());
        match skipped.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(out, "  on restart: skip {}", local(one.scheduled_for));
            }
            [first, .., last] => {
                let _ = writeln!(
                    out,
                    "  on restart: skip {} missed, {} … {}",
                    skipped.len(),
                    local(first.scheduled_for),
                    local(last.scheduled_for)
                );
            }
        }
        for d in &runs {
            let trigger = d.trigger.map_or("", |t| t.as_str());
            let _ = writeln!(
                out,
                "  on restart: run {} ({trigger})",
                local(d.scheduled_for)
            );
        }
        if due.is_empty() {
            let _ = writeln!(out, "  on restart: nothing missed");
        }
    }
    out
}
