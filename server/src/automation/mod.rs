//! Automation: the jobs of `patientflow run` (declared in the config), their cron schedules,
//! the scheduler that runs them and its history, and alerts — with the semantics Airflow,
//! Dagster and Databricks Jobs users rely on: retries with backoff and jitter, no overlap,
//! catch-up after downtime (`none` | `latest` | `all`), one idempotency key per job and
//! occurrence, daylight saving time handled.

pub(crate) mod alerts;
mod execute;
mod history;
mod jobs;
mod schedule;
mod scheduler;
mod watch;

pub(crate) use alerts::{Alert, Alerts, AlertsConfig};
pub(crate) use execute::Context;
pub(crate) use history::{Run, Status};
pub(crate) use jobs::{Job, JobConfig, JobKind, RunConfig, jobs};
pub(crate) use schedule::due;
pub(crate) use scheduler::{JobView, Scheduler, SubmitError, Submitted, stopped};
