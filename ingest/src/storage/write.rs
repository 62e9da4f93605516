//! Writing tables: one commit per write, carrying the source positions (Delta application
//! transactions) with the data, and the Parquet settings every file is written with.

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::Expr;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};

use crate::error::{Error, Result};

/// Columns whose values are (nearly) all distinct: raw payloads, ids and hashes. They get
/// neither dictionaries nor min/max statistics, which would gain nothing and cost CPU.
const UNIQUE_COLUMNS: [&str; 5] = ["raw", "raw_text", "dedupe_key", "event_id", "batch_id"];

/// Numeric columns that are (nearly) all distinct: no dictionary, but statistics for pruning.
const UNIQUE_NUMBERS: [&str; 2] = ["source_line", "event_time"];

/// Commits between two checkpoints of every table (Delta's `delta.checkpointInterval`, set when
/// a table is created, as Spark sets it; delta-rs would take 100). A reader brings a table up to
/// date from its last checkpoint, and looking up a source position replays the JSON commits after
/// it: a stream that commits every second would otherwise re-read up to a hundred commit files
/// per table and batch.
pub(crate) const CHECKPOINT_EVERY: u64 = 10;
/// The table property that says how many commits a table's writers make between checkpoints.
pub(crate) const CHECKPOINT_INTERVAL: &str = "delta.checkpointInterval";

/// The properties a table is created with, by any writer (a plain write or a staged commit).
pub(crate) fn created_with() -> [(&'static str, Option<String>); 1] {
    [(CHECKPOINT_INTERVAL, Some(CHECKPOINT_EVERY.to_string()))]
}

/// How a write treats the rows already in the table.
#[derive(Debug, Clone)]
pub(crate) enum WriteMode {
    /// Add the rows.
    Append,
    /// Replace the whole table with the rows.
    Overwrite,
    /// Replace the rows matching the predicate with the rows (which must all match it).
    Replace(Expr),
    /// Replace the whole table, its schema and partitioning too.
    Recreate,
}

/// Writes `batches` to `table` in one commit that also records `txns`, so data and source
/// positions land together or not at all. New columns are merged into the schema.
pub(crate) async fn write(
    table: DeltaTable,
    name: &str,
    batches: Vec<RecordBatch>,
    mode: WriteMode,
    txns: Vec<Transaction>,
    partition_by: &[&str],
) -> Result<DeltaTable> {
    let table = create_if_remote(table, name, &batches, partition_by).await?;
    let before = table.version();
    let props = writer_properties();
    let save_mode = match mode {
        WriteMode::Append => SaveMode::Append,
        WriteMode::Overwrite | WriteMode::Replace(_) | WriteMode::Recreate => SaveMode::Overwrite,
    };
    let schema_mode = match mode {
        WriteMode::Recreate => SchemaMode::Overwrite,
        _ => SchemaMode::Merge,
    };
    let mut builder = table
        .write(batches)
        .with_save_mode(save_mode)
        .with_schema_mode(schema_mode)
        .with_writer_properties(props)
        .with_configuration(created_with())
        .with_commit_properties(commit_properties(txns));
    if let WriteMode::Replace(predicate) = mode {
        builder = builder.with_replace_where(predicate);
    }
    if !partition_by.is_empty() {
        builder = builder.with_partition_columns(partition_by.iter().map(|c| c.to_string()));
    }
    let delta = |e: DeltaTableError| Error::delta(name, e);
    let mut table = builder.await.map_err(delta)?;
    super::reload_past_checkpoint(&mut table, before)
        .await
        .map_err(delta)?;
    Ok(table)
}

/// A table of a remote root that does not exist yet, created empty first, so that two
/// writers starting at once cannot both commit their first batch: only one creation wins (the
/// log's first entry is written if absent), the other loads that first version, and the data
/// commits that follow carry their application transactions through Delta's conflict detection. (A local root has
/// the writer lock instead.)
async fn create_if_remote(
    table: DeltaTable,
    name: &str,
    batches: &[RecordBatch],
    partition_by: &[&str],
) -> Result<DeltaTable> {
    let remote = table.table_url().scheme() != "file";
    let Some(first) = batches
        .first()
        .filter(|_| remote && table.version().is_none())
    else {
        return Ok(table);
    };
    let mut create = table
        .clone()
        .write(vec![first.slice(0, 0)])
        .with_save_mode(SaveMode::ErrorIfExists)
        .with_configuration(created_with());
    if !partition_by.is_empty() {
        create = create.with_partition_columns(partition_by.iter().map(|c| c.to_string()));
    }
    match create.await {
        // delta-rs, finding version 0 written by another writer meanwhile, commits the
        // creation on top of that writer's latest version instead; this writer's source
        // positions predate those commits, so it must not go on.
        Ok(created) if created.version() != Some(0) => Err(Error::Conflict {
            table: name.to_string(),
            detail: "it was created by another writer while this one created it".into(),
        }),
        Ok(created) => Ok(created),
        Err(e) => {
            // Another writer created it meanwhile. Carry on from its creation, not its latest
            // version: what this writer read (its source positions) predates every commit
            // since, so those commits must go through conflict detection with this one's
            // application transactions, which refuses a batch the other writer already landed.
            let mut table = table;
            table
                .load_version(0)
                .await
                .map_err(|_| Error::delta(name, e))?;
            tracing::debug!(table = name, "created by another writer meanwhile");
            Ok(table)
        }
    }
}

/// How every commit is made: with `txns` (the source positions it records), and without
/// delta-rs's cleanup of expired log files, which lists the whole `_delta_log` after every
/// commit (a stream's commit a second made that listing grow with each batch). `maintain`
/// cleans the log instead, once a day.
pub(crate) fn commit_properties(txns: Vec<Transaction>) -> CommitProperties {
    CommitProperties::default()
        .with_application_transactions(txns)
        .with_cleanup_expired_logs(Some(false))
}

/// How every Parquet file of every table is written (by a write or a compaction).
pub(crate) fn writer_properties() -> WriterProperties {
    // Snappy: what Spark writes by default and what every engine reads (Synapse serverless
    // included). (LZ4_RAW was measured no faster on the raw payloads.)
    let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
    // Unique values gain nothing from dictionaries or min/max statistics, and cost CPU.
    for column in UNIQUE_COLUMNS {
        let path = ColumnPath::from(column);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    for column in UNIQUE_NUMBERS {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    props.build()
}

/// Appends `batches` to `table`; see [`write`].
pub(crate) async fn append(
    table: DeltaTable,
    name: &str,
    batches: Vec<RecordBatch>,
    txns: Vec<Transaction>,
    partition_by: &[&str],
) -> Result<DeltaTable> {
    write(table, name, batches, WriteMode::Append, txns, partition_by).await
}
