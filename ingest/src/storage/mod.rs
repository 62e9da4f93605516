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
use deltalake::datafusion::prelude::lit;
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

use crate::error::{Error, Result};

mod compact;
pub(crate) mod derived;
mod files;
mod read;
mod staged;
mod write;

pub(crate) use compact::{Merged, merge_small_files};
pub(crate) use files::{DataFile, conform, decode_file, fetch_file, files_in, partition_value};
pub(crate) use read::{Keys, column, scan, scan_keyed, scan_stream};
pub(crate) use staged::StagedTable;
pub(crate) use write::{
    CHECKPOINT_EVERY, CHECKPOINT_INTERVAL, WriteMode, append, commit_properties, write,
    writer_properties,
};

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
        update(&mut table, name).await?;
        Ok(table)
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

    /// A folder for a writer's temporary files: `<root>/_tmp` of a local root (on the tables'
    /// disk, and emptied here of what a killed writer left: call it holding the writer lock),
    /// the system's temporary folder for a remote one.
    pub(crate) fn scratch_dir(&self) -> Result<PathBuf> {
        let Some(dir) = self.local_path() else {
            return Ok(std::env::temp_dir());
        };
        let dir = dir.join("_tmp");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "removed an interrupted writer's files")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&dir, e)),
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir)
    }

    /// A new folder named `prefix…` in `scratch` (see [`TableRoot::scratch_dir`]), removed
    /// when dropped.
    pub(crate) fn scratch_subdir(scratch: &Path, prefix: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(scratch)
            .map_err(|e| Error::io(scratch, e))
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

/// Brings `table` up to its latest commit, reading only the commits since it was loaded (a
/// table never loaded reads its whole log); a location without a table yet stays so until a
/// writer creates it.
pub(crate) async fn update(table: &mut DeltaTable, name: &str) -> Result<()> {
    let updated = match table.version() {
        Some(_) => update_table(table).await,
        // One listing of the log folder instead of a failed load (which the Delta kernel also
        // logs as an error) each time a table not created yet is brought up to date.
        None => match table.log_store().is_delta_table_location().await {
            Ok(true) => table.load().await,
            Ok(false) => return Ok(()),
            Err(e) => Err(e),
        },
    };
    match updated {
        Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(()),
        Err(e) => Err(Error::delta(name, e)),
    }
}

/// Brings a loaded `table` up to its latest commit: from the commits since it was loaded, or
/// afresh from a checkpoint written since.
///
/// delta-rs 1.1 keeps a table's files as one Arrow batch per commit it replayed since the table
/// was loaded, and runs every one of those batches through its log replay again at each update.
/// A table brought forward after each of a stream's commits got slower with every commit (a
/// follower's landing took 5× as long after five minutes at a commit or two a second). A
/// checkpoint holds the same files in a few large batches, so a table whose update passes one
/// is loaded from it.
pub async fn update_table(table: &mut DeltaTable) -> std::result::Result<(), DeltaTableError> {
    let before = table.version();
    table.update_incremental(None).await?;
    reload_past_checkpoint(table, before).await
}

/// Loads `table` afresh when a checkpoint was due between version `before` (excluded) and its
/// version now (included): after a commit or an update that passed one (see [`update_table`]).
pub(crate) async fn reload_past_checkpoint(
    table: &mut DeltaTable,
    before: Option<u64>,
) -> std::result::Result<(), DeltaTableError> {
    let (Some(before), Some(now)) = (before, table.version()) else {
        return Ok(());
    };
    let every = table
        .snapshot()?
        .table_config()
        .checkpoint_interval
        .map_or(DELTA_RS_CHECKPOINT_EVERY, |n| n.get());
    // delta-rs writes a checkpoint at each version v with (v + 1) a multiple of the interval.
    if crossed_checkpoint(before, now, every) {
        table.state = None;
        table.load_version(now).await?;
    }
    Ok(())
}

/// The checkpoint interval delta-rs uses for a table that does not set one.
const DELTA_RS_CHECKPOINT_EVERY: u64 = 100;

/// Whether a version `v` with `(v + 1) % every == 0` (one delta-rs writes a checkpoint at) lies
/// in `(before, now]`.
fn crossed_checkpoint(before: u64, now: u64, every: u64) -> bool {
    (now + 1) / every > (before + 1) / every
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_table_opened_before_it_existed_catches_up_once_another_writer_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let mut early = root.open("bronze/t").await.unwrap();
        assert_eq!(early.version(), None);
        update(&mut early, "bronze/t").await.unwrap();
        assert_eq!(early.version(), None);

        let schema = Arc::new(deltalake::arrow::datatypes::Schema::new(vec![
            deltalake::arrow::datatypes::Field::new(
                "n",
                deltalake::arrow::datatypes::DataType::Int64,
                false,
            ),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![std::sync::Arc::new(
                deltalake::arrow::array::Int64Array::from(vec![1, 2, 3]),
            )],
        )
        .unwrap();
        root.append("bronze/t", vec![rows]).await.unwrap();
        update(&mut early, "bronze/t").await.unwrap();
        assert_eq!(early.version(), Some(0));
        assert_eq!(row_count(&early, "bronze/t").await.unwrap(), 3);
    }

    #[test]
    fn a_checkpoint_is_passed_when_a_version_before_a_multiple_of_the_interval_is_reached() {
        // Checkpoints at versions 9, 19, 29, … for an interval of 10.
        assert!(crossed_checkpoint(8, 9, 10));
        assert!(crossed_checkpoint(0, 19, 10));
        assert!(crossed_checkpoint(5, 25, 10));
        assert!(!crossed_checkpoint(9, 10, 10));
        assert!(!crossed_checkpoint(10, 18, 10));
        assert!(!crossed_checkpoint(9, 9, 10));
    }

    #[tokio::test]
    async fn tables_written_and_followed_across_checkpoints_keep_every_file_and_position() {
        use deltalake::arrow::array::Int64Array;
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        use deltalake::kernel::Transaction;
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let mut writer = root.open("bronze/t").await.unwrap();
        let mut reader: Option<DeltaTable> = None;
        for i in 0..25_i64 {
            let rows =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![i, i]))])
                    .unwrap();
            let txns = vec![Transaction::new("source", i)];
            writer = append(writer, "bronze/t", vec![rows], txns, &[])
                .await
                .unwrap();
            match reader.as_mut() {
                Some(reader) => update_table(reader).await.unwrap(),
                None => reader = Some(root.open("bronze/t").await.unwrap()),
            }
        }
        for table in [&writer, reader.as_ref().unwrap()] {
            assert_eq!(table.version(), Some(24));
            assert_eq!(row_count(table, "bronze/t").await.unwrap(), 50);
            assert_eq!(table.snapshot().unwrap().log_data().num_files(), 25);
            assert_eq!(
                txn_version(table, "bronze/t", "source").await.unwrap(),
                Some(24)
            );
        }
    }

    #[test]
    fn the_scratch_folder_of_a_local_root_is_emptied_of_a_killed_writer_s_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let scratch = root.scratch_dir().unwrap();
        assert_eq!(scratch, dir.path().join("_tmp"));
        let left = scratch.join("gold-slices-x");
        std::fs::create_dir_all(&left).unwrap();
        std::fs::write(left.join("0.arrow"), b"slice").unwrap();

        let again = root.scratch_dir().unwrap();
        assert_eq!(again, scratch);
        assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0);
    }
}
