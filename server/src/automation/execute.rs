//! One attempt of a batch job, in this process: the same library calls as the commands
//! (`ingest`, `ingest batch`, `gold refresh`, `maintain`), with the counts for the history.

use std::path::{Path, PathBuf};
use std::time::Duration;

use patientflow_ingest::{BatchIngest, Dataset, GoldRefresh, Ingest, Maintenance, TableRoot};

use super::history::Counts;
use super::jobs::{Job, JobKind};
use crate::error::{Error, Result};

/// What every job of a process shares.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) root: TableRoot,
    /// The gold refresh after an ingest, and the `gold` jobs' refresh.
    pub(crate) gold: GoldRefresh,
    pub(crate) maintenance: Maintenance,
    pub(crate) source_timezone: Option<chrono_tz::Tz>,
    /// Records per bronze commit of an `ingest` job (`[ingest] batch_records`).
    pub(crate) batch_records: Option<usize>,
}

/// How often a job retries the writer lock while another writer (the stream, another job,
/// a command) holds it.
const LOCK_RETRY: Duration = Duration::from_millis(200);

/// Runs one attempt of `job` (not a stream). Waits while another writer holds the root.
pub(crate) async fn attempt(job: &Job, ctx: &Context) -> Result<Counts> {
    loop {
        match once(job, ctx).await {
            Err(Error::Ingest(patientflow_ingest::Error::Busy { .. })) => {
                tokio::time::sleep(LOCK_RETRY).await;
            }
            other => return other,
        }
    }
}

async fn once(job: &Job, ctx: &Context) -> Result<Counts> {
    let from = || {
        job.from
            .as_deref()
            .ok_or_else(|| Error::Jobs(format!("job `{}` has no `from`", job.name)))
    };
    match job.kind {
        JobKind::Ingest => {
            let mut ingest = Ingest::new(ctx.root.clone(), from()?).with_gold(ctx.gold.clone());
            if let Some(tz) = ctx.source_timezone {
                ingest = ingest.with_source_timezone(tz);
            }
            if let Some(n) = ctx.batch_records {
                ingest = ingest.with_batch_records(n);
            }
            let m = ingest.run().await?;
            Ok(Counts {
                files: m.files as u64,
                records_in: m.counts.records_in,
                silver_rows: m.counts.silver_rows,
                quarantined: m.counts.quarantined,
                duplicates: m.counts.duplicates,
            })
        }
        JobKind::Departments | JobKind::Ehr => {
            let dataset = if job.kind == JobKind::Ehr {
                Dataset::Ehr
            } else {
                Dataset::Departments
            };
            let files = batch_files(Path::new(from()?), dataset)?;
            if files.is_empty() {
                tracing::info!(job = %job.name, "no files in the folder: nothing to ingest");
                return Ok(Counts::default());
            }
            let mut batch = BatchIngest::new(ctx.root.clone()).with_gold(ctx.gold.clone());
            for file in files {
                batch = batch.with_file(dataset, file);
            }
            if let Some(tz) = ctx.source_timezone {
                batch = batch.with_source_timezone(tz);
            }
            let m = batch.run().await?;
            let mut counts = Counts {
                files: m.files as u64,
                ..Counts::default()
            };
            for c in m.counts.values() {
                counts.records_in += c.records_in;
                counts.silver_rows += c.silver_rows;
                counts.quarantined += c.quarantined;
                counts.duplicates += c.duplicates;
            }
            Ok(counts)
        }
        JobKind::Gold => {
            ctx.gold.clone().run().await?;
            Ok(Counts::default())
        }
        JobKind::Maintain => {
            ctx.maintenance.clone().run().await?;
            Ok(Counts::default())
        }
        JobKind::Stream => Err(Error::Jobs(format!(
            "job `{}` is a stream: it runs continuously, not in attempts",
            job.name
        ))),
    }
}

/// The files of a batch folder the dataset reads (CSV; EHR extracts also Parquet), by name.
/// Hidden files and files still being written (`.tmp`, `.part`) wait.
pub(crate) fn batch_files(dir: &Path, dataset: Dataset) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Jobs(format!(
            "cannot read the folder {}: {e}; create it or fix the job's `from`",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && reads(p, dataset))
        .collect();
    files.sort();
    Ok(files)
}

fn reads(path: &Path, dataset: Dataset) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') {
        return false;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => true,
        Some("parquet") => dataset == Dataset::Ehr,
        _ => false,
    }
}
