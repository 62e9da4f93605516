//! Table maintenance (`patientflow maintain`): compaction of small files, a checkpoint every
//! N commits, and `VACUUM` of the files no version younger than the retention references.
//!
//! Every table is created with `delta.checkpointInterval` = 10, so its writers checkpoint it as
//! they go; `maintain` sets a table's interval to its own N where they differ (a table created
//! before, or another N), and writes a checkpoint when N commits have passed since the last one.
//! Log files older than the log retention (30 days) that a checkpoint supersedes are deleted
//! here, not by the writers (delta-rs's cleanup after each commit lists the whole log).
//!
//! Readers never fail during maintenance: a compaction only adds a version (its new files
//! hold the same rows, marked `dataChange: false`), so a reader's snapshot keeps every file it
//! names; VACUUM deletes only files that versions older than the retention (at least an hour)
//! removed, which no running query still reads. Every table stays at reader version 1 /
//! writer version 2: neither operation adds a table feature. Maintenance holds the writer lock,
//! so it never races an ingest or a gold refresh of the same root; what it did goes to
//! `ops/maintenance` in one commit at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::operations::vacuum::VacuumMode;

use crate::concurrency::{TABLES_OPENED_AT_ONCE, at_most};
use crate::error::{Error, Result};
use crate::storage::{
    CHECKPOINT_EVERY, CHECKPOINT_INTERVAL, TableRoot, commit_properties, writer_properties,
};
use crate::tables::{ALL_TABLES, MAINTENANCE, MAINTENANCE_SCHEMA, timestamp_array};

/// The shortest retention VACUUM accepts: a query started before it may still read a file
/// that a later version removed.
pub const MIN_RETENTION: Duration = Duration::from_secs(3_600);

/// What one operation did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The table, e.g. `gold/fact_admission`.
    pub table: &'static str,
    /// `compact`, `checkpoint_interval` (the table's `delta.checkpointInterval` was set),
    /// `checkpoint`, `log_cleanup` (expired log files deleted) or `vacuum`.
    pub kind: &'static str,
    /// The table version after the operation.
    pub version: u64,
    /// Files the compaction removed from the table or VACUUM deleted (in a dry run: would
    /// delete).
    pub files_removed: u64,
    /// The files VACUUM deleted (in a dry run: would delete), relative to the table.
    pub deleted: Vec<String>,
    /// Files the compaction wrote.
    pub files_added: u64,
    /// Bytes of the files a compaction removed.
    pub bytes_removed: i64,
}

impl Operation {
    /// An operation of `kind` on `table` that left it at `version`, having removed, deleted
    /// and added nothing (the caller sets what it did).
    fn new(table: &'static str, kind: &'static str, table_version: Option<u64>) -> Self {
        Self {
            table,
            kind,
            version: table_version.unwrap_or(0),
            files_removed: 0,
            deleted: vec![],
            files_added: 0,
            bytes_removed: 0,
        }
    }
}

/// What a maintenance run did.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceReport {
    /// The run's id (a UUID), as recorded in `ops/maintenance`.
    pub run_id: String,
    /// Nothing was changed; `operations` lists what VACUUM would delete.
    pub dry_run: bool,
    /// The operations, table by table.
    pub operations: Vec<Operation>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Maintains every table under a root.
///
/// ```no_run
/// # async fn demo() -> patientflow_ingest::Result<()> {
/// use patientflow_ingest::{Maintenance, TableRoot};
/// let report = Maintenance::new(TableRoot::parse("data")?).run().await?;
/// println!("{} operations", report.operations.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Maintenance {
    root: TableRoot,
    retention: Duration,
    checkpoint_every: u64,
    dry_run: bool,
}

impl Maintenance {
    /// Maintenance of the tables under `root`: VACUUM retention 7 days, a checkpoint every 10
    /// commits.
    pub fn new(root: TableRoot) -> Self {
        Self {
            root,
            retention: Duration::from_secs(7 * 24 * 3_600),
            checkpoint_every: CHECKPOINT_EVERY,
            dry_run: false,
        }
    }

    /// Files removed longer ago than this are deleted by VACUUM (at least [`MIN_RETENTION`]).
    pub fn with_retention(mut self, retention: Duration) -> Result<Self> {
        if retention < MIN_RETENTION {
            return Err(Error::InvalidArgument(format!(
                "a VACUUM retention of {} s is below the minimum of one hour: a query started \
                 before it could lose its files; give at least 1 hour",
                retention.as_secs()
            )));
        }
        self.retention = retention;
        Ok(self)
    }

    /// A checkpoint is written once a table has this many commits since its last one, and the
    /// tables' writers checkpoint them this often from now on.
    pub fn with_checkpoint_every(mut self, commits: u64) -> Result<Self> {
        if commits == 0 {
            return Err(Error::InvalidArgument(
                "a checkpoint interval of 0 commits: give a positive number".into(),
            ));
        }
        self.checkpoint_every = commits;
        Ok(self)
    }

    /// Change nothing: list the files VACUUM would delete.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Takes the writer lock and maintains every table that exists.
    pub async fn run(self) -> Result<MaintenanceReport> {
        let _lock = self.root.lock_writer()?;
        let started = Instant::now();
        let mut report = MaintenanceReport {
            run_id: uuid::Uuid::new_v4().to_string(),
            dry_run: self.dry_run,
            ..MaintenanceReport::default()
        };
        for name in ALL_TABLES {
            let table = self.root.open(name).await?;
            if table.version().is_none() {
                continue;
            }
            let table = if self.dry_run {
                table
            } else {
                let (table, interval) = self.set_checkpoint_interval(table, name).await?;
                report.operations.extend(interval);
                // Before the compaction, whose commit would clean the log unrecorded (delta-rs's
                // optimize cleans after its commits whatever it is told).
                report.operations.extend(clean_log(&table, name).await?);
                let (table, compaction) = compact(table, name).await?;
                report.operations.extend(compaction);
                let checkpoint = self.checkpoint(&table, name).await?;
                report.operations.extend(checkpoint);
                table
            };
            report.operations.push(self.vacuum(table, name).await?);
        }
        if !self.dry_run {
            self.root
                .append(MAINTENANCE, vec![to_batch(&report)?])
                .await?;
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Sets the table's `delta.checkpointInterval` to `checkpoint_every` where it differs, so
    /// that its writers checkpoint it that often.
    async fn set_checkpoint_interval(
        &self,
        table: DeltaTable,
        name: &'static str,
    ) -> Result<(DeltaTable, Option<Operation>)> {
        let wanted = self.checkpoint_every.to_string();
        if checkpoint_interval(&table, name)?.as_ref() == Some(&wanted) {
            return Ok((table, None));
        }
        let table = table
            .set_tbl_properties()
            .with_properties([(CHECKPOINT_INTERVAL.to_string(), wanted)].into())
            .with_commit_properties(commit_properties(vec![]))
            .await
            .map_err(|e| Error::delta(name, e))?;
        tracing::info!(
            table = name,
            commits = self.checkpoint_every,
            "checkpoint interval set"
        );
        let operation = Operation::new(name, "checkpoint_interval", table.version());
        Ok((table, Some(operation)))
    }

    /// A checkpoint at the current version when the table has `checkpoint_every` commits
    /// since its last one.
    async fn checkpoint(
        &self,
        table: &DeltaTable,
        name: &'static str,
    ) -> Result<Option<Operation>> {
        let version = table.version().unwrap_or(0);
        // Commits since the last checkpoint (all of them, versions 0 to `version`, without one).
        let since = match last_checkpoint(table, name).await? {
            Some(last) => version.saturating_sub(last),
            None => version + 1,
        };
        if since < self.checkpoint_every {
            return Ok(None);
        }
        checkpoint(table, name).await?;
        Ok(Some(Operation::new(name, "checkpoint", Some(version))))
    }

    async fn vacuum(&self, table: DeltaTable, name: &'static str) -> Result<Operation> {
        let retention = chrono::Duration::from_std(self.retention)
            .map_err(|e| Error::InvalidArgument(format!("VACUUM retention: {e}")))?;
        let (table, metrics) = table
            .vacuum()
            .with_mode(VacuumMode::Lite)
            .with_retention_period(retention)
            // The table's own `deletedFileRetentionDuration` (7 days unless set) would refuse
            // a shorter retention; ours is checked against MIN_RETENTION instead.
            .with_enforce_retention_duration(false)
            .with_dry_run(self.dry_run)
            .await
            .map_err(|e| Error::delta(name, e))?;
        let files = metrics.files_deleted;
        if !files.is_empty() {
            tracing::info!(
                table = name,
                files = files.len(),
                dry_run = self.dry_run,
                "vacuum"
            );
        }
        Ok(Operation {
            files_removed: files.len() as u64,
            deleted: files,
            ..Operation::new(name, "vacuum", table.version())
        })
    }
}

/// The tables of `root` whose writers checkpoint less often than every `CHECKPOINT_EVERY` (10)
/// commits — created before tables were given the interval (delta-rs then takes 100), or set so
/// by hand. Every reader of such a table replays up to that many commit files, which a stream
/// does for every batch; `maintain` sets the interval.
pub(crate) async fn rarely_checkpointed(root: &TableRoot) -> Result<Vec<&'static str>> {
    let opened = ALL_TABLES.map(|name| async move {
        let table = root.open(name).await?;
        let rare = table.version().is_some()
            && checkpoint_interval(&table, name)?
                .and_then(|v| v.parse::<u64>().ok())
                .is_none_or(|n| n > CHECKPOINT_EVERY);
        Ok(rare.then_some(name))
    });
    let rare = at_most(TABLES_OPENED_AT_ONCE, opened.into_iter().collect()).await?;
    Ok(rare.into_iter().flatten().collect())
}

/// The table's `delta.checkpointInterval` as written, if it has one.
fn checkpoint_interval(table: &DeltaTable, name: &str) -> Result<Option<String>> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    Ok(snapshot
        .metadata()
        .configuration()
        .get(CHECKPOINT_INTERVAL)
        .cloned())
}

/// Writes a checkpoint of the table's current version: readers then load its state from one
/// Parquet file instead of replaying the commits before it.
pub(crate) async fn checkpoint(table: &DeltaTable, name: &'static str) -> Result<()> {
    deltalake::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(|e| Error::delta(name, e))?;
    tracing::info!(
        table = name,
        version = table.version(),
        "checkpoint written"
    );
    Ok(())
}

/// Deletes the log's commits and checkpoints older than the table's log retention
/// (`delta.logRetentionDuration`, 30 days unless set) that a later checkpoint makes
/// unnecessary. The writers leave this to maintenance: delta-rs's own cleanup lists the whole
/// log after every commit.
async fn clean_log(table: &DeltaTable, name: &'static str) -> Result<Option<Operation>> {
    let removed = deltalake::checkpoints::cleanup_metadata(table, None)
        .await
        .map_err(|e| Error::delta(name, e))?;
    if removed == 0 {
        return Ok(None);
    }
    tracing::info!(table = name, files = removed, "expired log files deleted");
    Ok(Some(Operation {
        files_removed: removed as u64,
        ..Operation::new(name, "log_cleanup", table.version())
    }))
}

/// Rewrites the small files of each partition into files of the table's target size (the
/// audit table and the tails that small batches leave).
pub(crate) async fn compact(
    table: DeltaTable,
    name: &'static str,
) -> Result<(DeltaTable, Option<Operation>)> {
    let (table, metrics) = table
        .optimize()
        .with_writer_properties(writer_properties())
        .await
        .map_err(|e| Error::delta(name, e))?;
    if metrics.num_files_removed == 0 {
        return Ok((table, None));
    }
    tracing::info!(
        table = name,
        removed = metrics.num_files_removed,
        added = metrics.num_files_added,
        "compacted"
    );
    let operation = Operation {
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        bytes_removed: metrics.files_removed.total_size,
        ..Operation::new(name, "compact", table.version())
    };
    Ok((table, Some(operation)))
}

/// The version of the table's last checkpoint (`_delta_log/_last_checkpoint`), if any.
async fn last_checkpoint(table: &DeltaTable, name: &str) -> Result<Option<u64>> {
    let path = deltalake::Path::from("_delta_log/_last_checkpoint");
    let bytes = match table.object_store().get(&path).await {
        Ok(found) => found.bytes().await,
        Err(deltalake::ObjectStoreError::NotFound { .. }) => return Ok(None),
        Err(e) => Err(e),
    }
    .map_err(|e| Error::delta(name, e.into()))?;
    let hint: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(hint["version"].as_u64())
}

/// The report's rows for `ops/maintenance`.
fn to_batch(report: &MaintenanceReport) -> Result<RecordBatch> {
    let ops = &report.operations;
    let now = chrono::Utc::now().timestamp_micros();
    let text = |f: fn(&Operation) -> &'static str| -> ArrayRef {
        Arc::new(ops.iter().map(|o| Some(f(o))).collect::<StringArray>())
    };
    let number = |f: &dyn Fn(&Operation) -> i64| -> ArrayRef {
        Arc::new(ops.iter().map(f).collect::<Int64Array>())
    };
    let columns = vec![
        Arc::new(StringArray::from(vec![report.run_id.as_str(); ops.len()])) as ArrayRef,
        timestamp_array(vec![Some(now); ops.len()]),
        text(|o| o.table),
        text(|o| o.kind),
        Arc::new(BooleanArray::from(vec![report.dry_run; ops.len()])) as ArrayRef,
        number(&|o| o.version as i64),
        number(&|o| o.files_removed as i64),
        number(&|o| o.files_added as i64),
        number(&|o| o.bytes_removed),
    ];
    RecordBatch::try_new(MAINTENANCE_SCHEMA.clone(), columns)
        .map_err(|e| Error::arrow(MAINTENANCE, e))
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::storage::append;

    #[tokio::test]
    async fn a_table_checkpointing_less_often_than_every_ten_commits_is_found_until_maintained() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let name = ALL_TABLES[0];
        let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef],
        )
        .unwrap();
        append(
            root.open(name).await.unwrap(),
            name,
            vec![batch],
            vec![],
            &[],
        )
        .await
        .unwrap();
        assert!(rarely_checkpointed(&root).await.unwrap().is_empty());

        let every = |n| {
            Maintenance::new(root.clone())
                .with_checkpoint_every(n)
                .unwrap()
        };
        every(100).run().await.unwrap();
        assert_eq!(rarely_checkpointed(&root).await.unwrap(), vec![name]);
        every(10).run().await.unwrap();
        assert!(rarely_checkpointed(&root).await.unwrap().is_empty());
    }
}
