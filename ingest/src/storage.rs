//! Where tables live: a table root URL (a local path by default), the Delta tables under it,
//! and the single-writer lock.
//!
//! All table data goes through deltalake / object_store; only the writer lock of a local root
//! touches the file system directly.

use std::fs::File;
use std::path::{Path, PathBuf};

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

use crate::error::{Error, Result};

/// The root under which every patientflow table lives (`<root>/bronze/patient_events`, …).
#[derive(Debug, Clone)]
pub struct TableRoot {
    url: Url,
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
        Ok(Self { url })
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
        DeltaTable::try_from_url(url)
            .await
            .map_err(|e| Error::delta(name, e))
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

/// Appends `batches` to `table` in one commit that also records `txns`, so data and source
/// positions land together or not at all. New columns are merged into the schema.
pub(crate) async fn append(
    table: DeltaTable,
    name: &str,
    batches: Vec<RecordBatch>,
    txns: Vec<Transaction>,
    partition_by: &[&str],
) -> Result<DeltaTable> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(|e| Error::arrow(name, e))?,
        ))
        .build();
    let mut builder = table
        .write(batches)
        .with_save_mode(SaveMode::Append)
        .with_schema_mode(SchemaMode::Merge)
        .with_writer_properties(props)
        .with_commit_properties(CommitProperties::default().with_application_transactions(txns));
    if !partition_by.is_empty() {
        builder = builder.with_partition_columns(partition_by.iter().map(|c| c.to_string()));
    }
    builder
        .await
        .map_err(|e: DeltaTableError| Error::delta(name, e))
}
