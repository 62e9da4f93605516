//! Indexes derived from the tables, kept on disk (redb files) so that a batch looks up what
//! it needs instead of reading a whole table: silver's dedupe keys, gold's patient histories.
//! An index is never the truth: it records which table (Delta table id) it was built from and
//! how far, and its owner rebuilds it when that does not match. It lives beside the tables of
//! a local root (`<root>/_index/`) and in the user's cache folder for a remote one.
//!
//! Because it is derived, a commit need not reach the disk at once: commits are made durable
//! (`fsync`) at most every [`DURABLE_EVERY`] and when the index closes. A process killed in
//! between loses the index's last commits, never its consistency: the sequence it covers is
//! written in the same transaction as the records, so it reopens at an earlier sequence and
//! catches up from the table.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::TableRoot;
use crate::concurrency::in_runs;
use crate::error::{Error, Result};

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// How long an index's commits may stay in the page cache before one is made durable: a
/// stream commits every second or so, and each `fsync` cost 20 ms on average and up to 250 ms.
const DURABLE_EVERY: Duration = Duration::from_secs(5);

/// Threads that read a batch's keys (see [`Derived::read_spread`]): reads in flight for the
/// disk, not cores to compute on.
const READ_THREADS: usize = 8;
/// Fewer keys than this per thread are not worth a thread.
const MIN_RUN: usize = 256;

/// One index file, open in this process.
#[derive(Debug)]
pub(crate) struct Derived {
    pub(crate) db: Database,
    pub(crate) path: PathBuf,
    /// When a commit was last made durable.
    durable_at: Mutex<Instant>,
}

impl Derived {
    /// Opens (creating) the index `file` of `root`, `what` it holds naming it in logs, with a
    /// page cache of `cache_bytes`; `None` when another process has it open.
    pub(crate) fn open(
        root: &TableRoot,
        file: &str,
        what: &'static str,
        cache_bytes: usize,
    ) -> Result<Option<Self>> {
        let path = location(root, file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let shown = path.display().to_string();
        let opened = Database::builder()
            .set_cache_size(cache_bytes)
            .set_repair_callback(move |session| {
                if session.progress() == 0.0 {
                    tracing::warn!(index = %shown, "repairing the {what}: the process that last wrote it did not close it");
                }
            })
            .create(&path);
        match opened {
            Ok(db) => Ok(Some(Self {
                db,
                path,
                durable_at: Mutex::new(Instant::now()),
            })),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                tracing::warn!(index = %path.display(), "the {what} is open in another process; reading the tables instead");
                Ok(None)
            }
            Err(e) => Err(index_error(&path, e)),
        }
    }

    /// `definition` in a read transaction of its own; `None` while nothing was written to it.
    pub(crate) fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        definition: redb::TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        self.table_in(&txn, definition)
    }

    /// `definition` in the read transaction `txn`; `None` while nothing was written to it.
    pub(crate) fn table_in<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &redb::ReadTransaction,
        definition: redb::TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
        match txn.open_table(definition) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// `read` over `items`, split into runs of neighbours read on threads of their own, each
    /// in a read transaction; the results in the order of `items`. A batch's keys fall at
    /// random over an index far larger than the page cache may hold, and one thread looking
    /// them up one after another waits on the disk for each page in turn (at 10M stays, after
    /// a dropped page cache, a 10,000-event batch's silver and history catch-up took 1.7 s;
    /// 0.9 s with eight threads).
    /// Reads in flight together finish sooner, and a write transaction after them finds the
    /// pages it changes in memory. `items` should be in key order, so that each thread walks
    /// one part of the tree; a single run is read on the calling thread.
    pub(crate) fn read_spread<T: Sync, R: Send>(
        &self,
        items: &[T],
        read: impl Fn(&redb::ReadTransaction, &[T]) -> Result<Vec<R>> + Sync,
    ) -> Result<Vec<R>> {
        in_runs(items, READ_THREADS, MIN_RUN, |run| {
            let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
            read(&txn, run)
        })
    }

    /// Commits `txn`, durably only when the last durable commit is [`DURABLE_EVERY`] old.
    pub(crate) fn commit(&self, txn: WriteTransaction) -> Result<()> {
        self.commit_as(txn, false)
    }

    /// Commits `txn` durably: what would be costly to redo (a filled index).
    pub(crate) fn commit_durably(&self, txn: WriteTransaction) -> Result<()> {
        self.commit_as(txn, true)
    }

    fn commit_as(&self, mut txn: WriteTransaction, durable: bool) -> Result<()> {
        let mut durable_at = self
            .durable_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let durable = durable || durable_at.elapsed() >= DURABLE_EVERY;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| self.fail(e))?;
        }
        txn.commit().map_err(|e| self.fail(e))?;
        if durable {
            *durable_at = Instant::now();
        }
        Ok(())
    }

    pub(crate) fn fail(&self, e: impl Into<redb::Error>) -> Error {
        index_error(&self.path, e)
    }

    /// The index's metadata value `key`.
    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        Ok(meta
            .get(key)
            .map_err(|e| self.fail(e))?
            .map(|v| v.value().to_string()))
    }

    /// A sequence kept in the metadata (0 when absent).
    pub(crate) fn meta_seq(&self, key: &str) -> Result<i64> {
        Ok(self.meta(key)?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Sets (or, with `None`, removes) metadata values within `txn`.
    pub(crate) fn set_meta(
        &self,
        txn: &WriteTransaction,
        values: &[(&str, Option<&str>)],
    ) -> Result<()> {
        let mut meta = txn.open_table(META).map_err(|e| self.fail(e))?;
        for (key, value) in values {
            match value {
                Some(v) => meta.insert(*key, *v).map(drop),
                None => meta.remove(*key).map(drop),
            }
            .map_err(|e| self.fail(e))?;
        }
        Ok(())
    }
}

/// Where the index `file` of `root` lives.
fn location(root: &TableRoot, file: &str) -> PathBuf {
    if let Some(dir) = root.local_path() {
        return dir.join("_index").join(file);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let root_hash = xxhash_rust::xxh3::xxh3_64(root.url().as_str().as_bytes());
    cache
        .join("patientflow")
        .join("index")
        .join(format!("{root_hash:016x}"))
        .join(file)
}

/// The Delta table id of `table` (none before its first commit).
pub(crate) fn table_id(table: &DeltaTable) -> Option<String> {
    let snapshot = table.snapshot().ok()?;
    let metadata = serde_json::to_value(snapshot.metadata()).ok()?;
    metadata.get("id")?.as_str().map(str::to_string)
}

fn index_error(path: &Path, e: impl Into<redb::Error>) -> Error {
    Error::Index {
        path: path.to_path_buf(),
        message: e.into().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMBERS: TableDefinition<u64, u64> = TableDefinition::new("numbers");

    #[test]
    fn reads_spread_over_threads_answer_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let index = Derived::open(&root, "t.redb", "test index", 1 << 20)
            .unwrap()
            .unwrap();
        let squares = |txn: &redb::ReadTransaction, keys: &[u64]| {
            let Some(table) = index.table_in(txn, NUMBERS)? else {
                return Ok(vec![None; keys.len()]);
            };
            keys.iter()
                .map(|k| Ok(table.get(k).map_err(|e| index.fail(e))?.map(|v| v.value())))
                .collect()
        };
        // Nothing written yet: every answer is none.
        assert_eq!(index.read_spread(&[1, 2], squares).unwrap(), [None, None]);

        let txn = index.db.begin_write().unwrap();
        {
            let mut table = txn.open_table(NUMBERS).unwrap();
            for k in (0..10_000u64).step_by(2) {
                table.insert(k, k * k).unwrap();
            }
        }
        index.commit(txn).unwrap();
        // Enough keys for every thread: the answers come back in the order of the keys.
        let keys: Vec<u64> = (0..10_000).collect();
        let read = index.read_spread(&keys, squares).unwrap();
        let expected: Vec<Option<u64>> =
            keys.iter().map(|k| (k % 2 == 0).then_some(k * k)).collect();
        assert_eq!(read, expected);

        // A failing read fails the whole.
        let failed = index.read_spread(&keys, |_, keys: &[u64]| {
            if keys.contains(&9_999) {
                Err(Error::Index {
                    path: index.path.clone(),
                    message: "broken".into(),
                })
            } else {
                Ok(vec![(); keys.len()])
            }
        });
        assert!(failed.is_err());
    }
}
