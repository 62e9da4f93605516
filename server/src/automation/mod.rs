//! Automation: the jobs of `patientflow run` (declared in the config) and their cron
//! schedules, with the semantics Airflow, Dagster and Databricks Jobs users rely on —
//! catch-up after downtime (`none` | `latest` | `all`), no overlap, one idempotency key per
//! job and occurrence, daylight saving time handled.

mod jobs;
mod schedule;

pub(crate) use jobs::{Job, JobConfig, JobKind, RunConfig, jobs};
pub(crate) use schedule::due;
