//! Where tables live: a table root URL (a local path by default), the Delta tables under it,
//! and the single-writer lock.
//!
//! All table data goes through deltalake / object_store; only the writer lock of a local root
//! touches the file system directly.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

use deltalake::arrow::array::StringArray;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::logical_expr::{JoinType, cast};
use deltalake::datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};

use crate::error::{Error, Result};

pub(crate) mod derived;
mod staged;

pub(crate) use staged::StagedTable;

/// The root under which every patientflow table lives (`<root>/bronze/patient_events`, …).
#[derive(Clone)]
pub struct TableRoot {
    url: Url,
    /// Object-store options (credentials among them) for a remote root.
    options: Arc<HashMap<String, String>>,
}

impl std::fmt::Debug for TableRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Option values may be secrets (an account key, a SAS token): only their names.
        f.debug_struct("TableRoot")
            .field("url", &self.url.as_str())
            .field("options", &self.options.keys().collect::<BTreeSet<_>>())
            .finish()
    }
}

impl TableRoot {
    /// A local path (created if missing) or a URL such as `file:///…` or `abfss://…`.
    pub fn parse(root: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidRoot {
            root: root.to_string(),
            reason,
        };
        let url = match Url::parse(root) {
            Ok(url) if url.scheme().len() > 1 => url,
            _ => {
                let path = Path::new(root);
                std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
                let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
                Url::from_directory_path(&abs)
                    .map_err(|()| invalid("not an absolute directory path".into()))?
            }
        };
        match url.scheme() {
            "file" => {}
            "abfss" | "abfs" | "az" | "adl" | "azure" => deltalake::azure::register_handlers(None),
            other => {
                return Err(invalid(format!(
                    "unsupported scheme `{other}`; use a local path, file:// or abfss://"
                )));
            }
        }
        let mut url = url;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(Self {
            url,
            options: Arc::default(),
        })
    }

    /// With object-store options for a remote root, e.g. `azure_storage_account_key` or
    /// `azure_storage_sas_token` (object_store's Azure keys; the environment's `AZURE_*`
    /// variables are read too). Values are secrets: never logged.
    pub fn with_storage_options(mut self, options: HashMap<String, String>) -> Self {
        self.options = Arc::new(options);
        self
    }

    /// The object-store options.
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The root as a URL, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The local directory of a `file://` root.
    pub fn local_path(&self) -> Option<PathBuf> {
        (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }

    /// URL of a table under the root, e.g. `bronze/patient_events`.
    pub fn table_url(&self, name: &str) -> Result<Url> {
        self.url
            .join(&format!("{name}/"))
            .map_err(|e| Error::InvalidRoot {
                root: self.url.to_string(),
                reason: e.to_string(),
            })
    }

    /// Opens a table; a table that does not exist yet comes back uninitialised
    /// (`version() == None`) and is created by its first write.
    pub async fn open(&self, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(name)?;
        if let Some(path) = url.to_file_path().ok().filter(|_| url.scheme() == "file") {
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        let mut table = deltalake::DeltaTableBuilder::from_url(url)
            .and_then(|b| b.with_storage_options((*self.options).clone()).build())
            .map_err(|e| Error::delta(name, e))?;
        // A location without a table yet is created by its first write.
        match table.load().await {
            Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(table),
            Err(e) => Err(Error::delta(name, e)),
        }
    }

    /// Appends `batches` to the table `name` in one commit (creating it on the first write).
    pub async fn append(&self, name: &str, batches: Vec<RecordBatch>) -> Result<()> {
        append(self.open(name).await?, name, batches, Vec::new(), &[]).await?;
        Ok(())
    }

    /// The `columns` of every row of the table `name`; none for a table not created yet.
    pub async fn read(&self, name: &str, columns: &[&str]) -> Result<Vec<RecordBatch>> {
        scan(&self.open(name).await?, name, columns, lit(true), &[]).await
    }

    /// Takes the exclusive writer lock of this root, failing at once when another process
    /// holds it. Remote roots rely on Delta's optimistic concurrency instead.
    pub fn lock_writer(&self) -> Result<WriterLock> {
        let Some(dir) = self.local_path() else {
            return Ok(WriterLock { _file: None });
        };
        let path = dir.join("_patientflow.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(WriterLock { _file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy {
                root: self.url.to_string(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Takes the writer lock, waiting while another process holds it (a streaming ingest
    /// takes turns with one-shot commands between its batches).
    pub async fn wait_for_writer(&self) -> Result<WriterLock> {
        let mut said = false;
        loop {
            match self.lock_writer() {
                Err(Error::Busy { lock, .. }) => {
                    if !said {
                        tracing::info!(lock = %lock.display(), "waiting for another writer to finish");
                        said = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }
}

/// Held while a process writes under a table root; released on drop (or process exit).
#[derive(Debug)]
pub struct WriterLock {
    _file: Option<File>,
}

/// The application-transaction version recorded in `table` for `app_id` (Delta `txn`).
pub(crate) async fn txn_version(
    table: &DeltaTable,
    name: &str,
    app_id: &str,
) -> Result<Option<i64>> {
    if table.version().is_none() {
        return Ok(None);
    }
    let state = table.snapshot().map_err(|e| Error::delta(name, e))?;
    state
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(name, e))
}

/// The number of rows of `table` by its Delta log (0 for a table not created yet).
pub(crate) async fn row_count(table: &DeltaTable, name: &str) -> Result<usize> {
    use futures::TryStreamExt;
    let Ok(state) = table.snapshot() else {
        return Ok(0);
    };
    state
        .snapshot()
        .file_views(table.log_store().as_ref(), None)
        .try_fold(
            0,
            |n, f| async move { Ok(n + f.num_records().unwrap_or(0)) },
        )
        .await
        .map_err(|e| Error::delta(name, e))
}

/// Columns whose values are (nearly) all distinct: raw payloads, ids and hashes. They get
/// neither dictionaries nor min/max statistics, which would gain nothing and cost CPU.
const UNIQUE_COLUMNS: [&str; 5] = ["raw", "raw_text", "dedupe_key", "event_id", "batch_id"];

/// Numeric columns that are (nearly) all distinct: no dictionary, but statistics for pruning.
const UNIQUE_NUMBERS: [&str; 2] = ["source_line", "event_time"];

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
        .with_commit_properties(CommitProperties::default().with_application_transactions(txns));
    if let WriteMode::Replace(predicate) = mode {
        builder = builder.with_replace_where(predicate);
    }
    if !partition_by.is_empty() {
        builder = builder.with_partition_columns(partition_by.iter().map(|c| c.to_string()));
    }
    builder
        .await
        .map_err(|e: DeltaTableError| Error::delta(name, e))
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
        .with_save_mode(SaveMode::ErrorIfExists);
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

/// The column `name` of `batch` as the array type `T`, or an error naming `table`.
pub(crate) fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    table: &str,
    name: &str,
) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            Error::arrow(
                table,
                std::io::Error::other(format!("column `{name}` is missing or of another type")),
            )
        })
}

/// Restricts a scan to the rows whose text `column` is (`keep`) or is not one of `values`.
/// It runs as a semi or anti join, so thousands of keys cost no deep predicate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys<'a> {
    pub(crate) column: &'a str,
    pub(crate) values: &'a BTreeSet<String>,
    pub(crate) keep: bool,
}

/// Reads all rows of `table` matching `filter`, ordered by `order`.
pub(crate) async fn scan(
    table: &DeltaTable,
    name: &str,
    columns: &[&str],
    filter: Expr,
    order: &[&str],
) -> Result<Vec<RecordBatch>> {
    scan_keyed(table, name, columns, filter, None, order).await
}

/// [`scan`], further restricted by `keys`.
pub(crate) async fn scan_keyed(
    table: &DeltaTable,
    name: &str,
    columns: &[&str],
    filter: Expr,
    keys: Option<Keys<'_>>,
    order: &[&str],
) -> Result<Vec<RecordBatch>> {
    let Some(df) = frame(table, name, columns, filter, keys, order).await? else {
        return Ok(vec![]);
    };
    let batches = df.collect().await.map_err(|e| Error::arrow(name, e))?;
    batches.iter().map(|b| without_views(b, name)).collect()
}

/// The rows of `table` matching `filter`, as a stream of batches read as they are consumed.
pub(crate) async fn scan_stream<'a>(
    table: &DeltaTable,
    name: &'a str,
    columns: &[&str],
    filter: Expr,
) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + use<'a>> {
    use futures::StreamExt;
    let stream = match frame(table, name, columns, filter, None, &[]).await? {
        Some(df) => Some(
            df.execute_stream()
                .await
                .map_err(|e| Error::arrow(name, e))?,
        ),
        None => None,
    };
    Ok(futures::stream::iter(stream)
        .flatten()
        .map(move |b| without_views(&b.map_err(|e| Error::arrow(name, e))?, name)))
}

/// The DataFrame of a scan; `None` for a table that does not exist yet.
async fn frame(
    table: &DeltaTable,
    name: &str,
    columns: &[&str],
    filter: Expr,
    keys: Option<Keys<'_>>,
    order: &[&str],
) -> Result<Option<DataFrame>> {
    if table.version().is_none() {
        return Ok(None);
    }
    let ctx = SessionContext::new();
    let df_err = |e: deltalake::datafusion::error::DataFusionError| Error::arrow(name, e);
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| Error::delta(name, e))?;
    let provider = table.table_provider().await.map_err(df_err)?;
    let mut df = ctx
        .read_table(provider)
        .map_err(df_err)?
        .filter(filter)
        .map_err(df_err)?;
    if let Some(keys) = keys {
        const KEY: &str = "__patientflow_key";
        let values: StringArray = keys.values.iter().map(|v| Some(v.as_str())).collect();
        let key_schema = Arc::new(Schema::new(vec![Field::new(KEY, DataType::Utf8, false)]));
        let key_batch = RecordBatch::try_new(key_schema, vec![Arc::new(values)])
            .map_err(|e| Error::arrow(name, e))?;
        let key_df = ctx.read_batch(key_batch).map_err(df_err)?;
        let join = if keys.keep {
            JoinType::LeftSemi
        } else {
            JoinType::LeftAnti
        };
        df = df
            .join_on(
                key_df,
                join,
                [cast(col(keys.column), DataType::Utf8).eq(col(KEY))],
            )
            .map_err(df_err)?;
    }
    let mut df = df.select_columns(columns).map_err(df_err)?;
    if !order.is_empty() {
        df = df
            .sort(order.iter().map(|c| col(*c).sort(true, false)).collect())
            .map_err(df_err)?;
    }
    Ok(Some(df))
}

/// DataFusion may read strings and binaries as view types; the pipeline works on the plain
/// types of the table schemas.
fn without_views(batch: &RecordBatch, name: &str) -> Result<RecordBatch> {
    let plain = |t: &DataType| match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    };
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match plain(field.data_type()) {
            Some(t) => {
                let cast = deltalake::arrow::compute::cast(column, &t)
                    .map_err(|e| Error::arrow(name, e))?;
                fields.push(Field::new(field.name(), t, field.is_nullable()));
                columns.push(cast);
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| Error::arrow(name, e))
}
