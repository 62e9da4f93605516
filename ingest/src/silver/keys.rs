//! Silver's dedupe keys on disk, so that refining a batch looks up its own keys instead of
//! loading every key silver holds (31 million at ten years of a network: 18 s and 1.3 GiB
//! before the first record).
//!
//! The index is derived from `silver/patient_events` and never the truth (see
//! [`crate::storage::derived`]): it records the table it was built from and the bronze
//! sequence up to which it holds that table's keys, and catches up by reading the rows after
//! that sequence. An index built from another table, or ahead of the table (a restored or
//! re-created silver), is cleared and rebuilt; one removed is rebuilt.

use deltalake::DeltaTable;
use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::datafusion::prelude::{col, lit};
use futures::StreamExt;
use redb::{ReadableTable, TableDefinition};

use super::KeySet;
use crate::error::Result;
use crate::storage::derived::{Derived, table_id};
use crate::storage::{TableRoot, column, scan_stream};
use crate::tables::SILVER_EVENTS;

const KEYS: TableDefinition<u128, ()> = TableDefinition::new("dedupe_keys");
/// The Delta table id of the silver table the keys are from.
const TABLE_ID: &str = "table_id";
/// The bronze sequence up to which the index holds that table's keys.
const COVERED: &str = "covered";
/// Keys inserted per write transaction while catching up (bounds its memory).
const KEYS_PER_TXN: usize = 1_000_000;
/// The index's page cache: lookups of a batch's keys touch few pages.
const CACHE_BYTES: usize = 64 << 20;

/// The dedupe keys of `silver/patient_events`, by bronze sequence.
#[derive(Debug)]
pub(crate) struct KeyIndex(Derived);

impl KeyIndex {
    /// Opens the index of `root`, brought up to `table` as of bronze sequence `done`; `None`
    /// when another process has it open (the caller then keeps the keys in memory).
    pub(crate) async fn open(
        root: &TableRoot,
        table: &DeltaTable,
        done: i64,
    ) -> Result<Option<Self>> {
        let Some(derived) =
            Derived::open(root, "silver_keys.redb", "dedupe key index", CACHE_BYTES)?
        else {
            return Ok(None);
        };
        let index = Self(derived);
        let id = table_id(table);
        let built_from = index.0.meta(TABLE_ID)?;
        if built_from != id || index.covered()? > done {
            if built_from.is_some() {
                tracing::info!(index = %index.0.path.display(), "the dedupe key index is of another silver table or ahead of it; rebuilding");
            }
            index.reset(id.as_deref())?;
        }
        index.sync(table, done).await?;
        Ok(Some(index))
    }

    /// The bronze sequence up to which the index holds silver's keys.
    pub(crate) fn covered(&self) -> Result<i64> {
        self.0.meta_seq(COVERED)
    }

    /// Empties the index and records that it is of the table `id`.
    fn reset(&self, id: Option<&str>) -> Result<()> {
        let d = &self.0;
        let txn = d.db.begin_write().map_err(|e| d.fail(e))?;
        txn.delete_table(KEYS).map_err(|e| d.fail(e))?;
        d.set_meta(&txn, &[(COVERED, Some("0")), (TABLE_ID, id)])?;
        d.commit(txn)
    }

    /// Adds the keys of `table`'s rows after the covered sequence up to `upto`.
    pub(crate) async fn sync(&self, table: &DeltaTable, upto: i64) -> Result<()> {
        let covered = self.covered()?;
        if covered >= upto {
            return Ok(());
        }
        if covered == 0 {
            tracing::info!(index = %self.0.path.display(), "building the dedupe key index from silver");
        }
        let filter = col("bronze_seq")
            .gt(lit(covered))
            .and(col("bronze_seq").lt_eq(lit(upto)));
        let mut stream = scan_stream(table, SILVER_EVENTS, &["dedupe_key"], filter).await?;
        let mut pending: Vec<u128> = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let keys = column::<StringArray>(&batch, SILVER_EVENTS, "dedupe_key")?;
            pending.extend(keys.iter().flatten().filter_map(parse_key));
            if pending.len() >= KEYS_PER_TXN {
                // Keys without the covered sequence: a crash here only repeats them.
                self.insert(&std::mem::take(&mut pending), None)?;
            }
        }
        // The table id too: an index opened before silver's first commit had none.
        self.insert(&pending, Some((upto, table_id(table))))?;
        tracing::debug!(from = covered, to = upto, "dedupe key index caught up");
        Ok(())
    }

    /// After silver's commit of bronze sequence `seq` with the rows `silver`, silver having
    /// held up to `before` until then: the batch's keys go in from memory when the index was
    /// up to date, else the index catches up from the table.
    pub(crate) async fn committed(
        &self,
        table: &DeltaTable,
        before: i64,
        seq: i64,
        silver: &RecordBatch,
    ) -> Result<()> {
        if before >= seq || self.covered()? != before {
            return self.sync(table, seq).await;
        }
        let keys = column::<StringArray>(silver, SILVER_EVENTS, "dedupe_key")?;
        let keys: Vec<u128> = keys.iter().flatten().filter_map(parse_key).collect();
        self.insert(&keys, Some((seq, table_id(table))))
    }

    /// Inserts `keys` in one transaction, recording with them the sequence they cover and the
    /// table they are from.
    fn insert(&self, keys: &[u128], covered: Option<(i64, Option<String>)>) -> Result<()> {
        let d = &self.0;
        let txn = d.db.begin_write().map_err(|e| d.fail(e))?;
        {
            let mut table = txn.open_table(KEYS).map_err(|e| d.fail(e))?;
            let mut sorted = keys.to_vec();
            sorted.sort_unstable();
            for key in sorted {
                table.insert(key, ()).map_err(|e| d.fail(e))?;
            }
        }
        if let Some((covered, id)) = covered {
            let covered = covered.to_string();
            let mut values = vec![(COVERED, Some(covered.as_str()))];
            // An id once known is kept.
            if let Some(id) = id.as_deref() {
                values.push((TABLE_ID, Some(id)));
            }
            d.set_meta(&txn, &values)?;
        }
        d.commit(txn)
    }

    /// Those of `keys` the index holds.
    pub(crate) fn existing(&self, keys: impl Iterator<Item = u128>) -> Result<KeySet> {
        let d = &self.0;
        let mut keys: Vec<u128> = keys.collect();
        keys.sort_unstable();
        keys.dedup();
        let found = d.read_spread(&keys, |txn, keys| {
            let Some(table) = d.table_in(txn, KEYS)? else {
                return Ok(Vec::new());
            };
            let mut found = Vec::new();
            for &key in keys {
                if table.get(key).map_err(|e| d.fail(e))?.is_some() {
                    found.push(key);
                }
            }
            Ok(found)
        })?;
        Ok(found.into_iter().collect())
    }
}

/// A `dedupe_key` as silver writes it (32 hex digits).
pub(crate) fn parse_key(text: &str) -> Option<u128> {
    u128::from_str_radix(text, 16).ok()
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::storage::append;

    /// Appends rows of bronze sequence `seq` with these keys to the table `name` under `root`.
    pub(in crate::silver) async fn add(
        root: &TableRoot,
        name: &str,
        seq: i64,
        keys: &[u128],
    ) -> DeltaTable {
        let batch = rows(seq, keys);
        let table = root.open(name).await.unwrap();
        append(table, name, vec![batch], vec![], &[]).await.unwrap()
    }

    /// Silver rows of bronze sequence `seq` with these keys.
    fn rows(seq: i64, keys: &[u128]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("bronze_seq", DataType::Int64, false),
            Field::new("dedupe_key", DataType::Utf8, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![seq; keys.len()])),
                Arc::new(StringArray::from_iter_values(
                    keys.iter().map(|k| format!("{k:032x}")),
                )),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_index_follows_its_silver_table_and_is_rebuilt_for_another() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let silver = add(&root, "silver/a", 1, &[1, 2]).await;
        let lookup = |index: &KeyIndex| {
            let mut found: Vec<u128> = index
                .existing([1, 2, 3, 4].into_iter())
                .unwrap()
                .into_iter()
                .collect();
            found.sort_unstable();
            found
        };

        let index = KeyIndex::open(&root, &silver, 1).await.unwrap().unwrap();
        assert_eq!((lookup(&index), index.covered().unwrap()), (vec![1, 2], 1));
        // A second process finds it open and keeps its keys in memory.
        assert!(KeyIndex::open(&root, &silver, 1).await.unwrap().is_none());
        let silver = add(&root, "silver/a", 2, &[3]).await;
        index.sync(&silver, 2).await.unwrap();
        assert_eq!(
            (lookup(&index), index.covered().unwrap()),
            (vec![1, 2, 3], 2)
        );
        drop(index);

        // Another table (silver re-created): the keys of the old one are gone.
        let other = add(&root, "silver/b", 1, &[4]).await;
        let index = KeyIndex::open(&root, &other, 1).await.unwrap().unwrap();
        assert_eq!((lookup(&index), index.covered().unwrap()), (vec![4], 1));
        drop(index);

        // The same table behind the index (restored from an older copy): rebuilt to it.
        let silver = root.open("silver/a").await.unwrap();
        let index = KeyIndex::open(&root, &silver, 2).await.unwrap().unwrap();
        assert_eq!(lookup(&index), vec![1, 2, 3]);
        drop(index);
        let index = KeyIndex::open(&root, &silver, 1).await.unwrap().unwrap();
        assert_eq!((lookup(&index), index.covered().unwrap()), (vec![1, 2], 1));
    }

    #[tokio::test]
    async fn an_index_opened_before_silver_s_first_commit_is_kept_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let empty = root.open("silver/a").await.unwrap();
        let index = KeyIndex::open(&root, &empty, 0).await.unwrap().unwrap();
        let silver = add(&root, "silver/a", 1, &[1]).await;
        index.sync(&silver, 1).await.unwrap();
        // A key only the index has shows whether reopening rebuilt it.
        index.insert(&[7], None).unwrap();
        drop(index);
        let index = KeyIndex::open(&root, &silver, 1).await.unwrap().unwrap();
        let found = index.existing([1, 7].into_iter()).unwrap();
        assert_eq!(found.len(), 2);
    }

    #[tokio::test]
    async fn a_commit_s_keys_go_in_from_memory_when_the_index_is_up_to_date_else_from_silver() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let silver = add(&root, "silver/a", 1, &[1]).await;
        let index = KeyIndex::open(&root, &silver, 1).await.unwrap().unwrap();
        let found = |keys: &[u128]| {
            let mut found: Vec<u128> = index
                .existing(keys.iter().copied())
                .unwrap()
                .into_iter()
                .collect();
            found.sort_unstable();
            found
        };

        // Up to date: the batch's keys (9 is in the batch only) go in as they are.
        let silver = add(&root, "silver/a", 2, &[2]).await;
        index
            .committed(&silver, 1, 2, &rows(2, &[2, 9]))
            .await
            .unwrap();
        assert_eq!((found(&[2, 9]), index.covered().unwrap()), (vec![2, 9], 2));

        // Behind (batch 3 committed by another writer): caught up from silver, not the batch.
        add(&root, "silver/a", 3, &[3]).await;
        let silver = add(&root, "silver/a", 4, &[4]).await;
        index
            .committed(&silver, 3, 4, &rows(4, &[4, 8]))
            .await
            .unwrap();
        assert_eq!(
            (found(&[3, 4, 8]), index.covered().unwrap()),
            (vec![3, 4], 4)
        );
    }

    #[tokio::test]
    async fn a_process_killed_between_durable_commits_reopens_behind_and_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().join("a").to_str().unwrap()).unwrap();
        let silver = add(&root, "silver/a", 1, &[1]).await;
        let index = KeyIndex::open(&root, &silver, 1).await.unwrap().unwrap();
        let silver = add(&root, "silver/a", 2, &[2]).await;
        index
            .committed(&silver, 1, 2, &rows(2, &[2]))
            .await
            .unwrap();
        assert_eq!(index.covered().unwrap(), 2);

        // The file as a SIGKILL leaves it (the page cache holds what was written, the
        // commits since the last durable one are not durable), copied beside another root.
        let killed = TableRoot::parse(dir.path().join("b").to_str().unwrap()).unwrap();
        let file = |root: &TableRoot| root.local_path().unwrap().join("_index/silver_keys.redb");
        std::fs::create_dir_all(file(&killed).parent().unwrap()).unwrap();
        std::fs::copy(file(&root), file(&killed)).unwrap();
        drop(index);
        {
            let reopened = Derived::open(&killed, "silver_keys.redb", "keys", CACHE_BYTES)
                .unwrap()
                .unwrap();
            assert!(reopened.meta_seq(COVERED).unwrap() < 2);
        }
        let index = KeyIndex::open(&killed, &silver, 2).await.unwrap().unwrap();
        assert_eq!(index.covered().unwrap(), 2);
        let mut found: Vec<u128> = index
            .existing([1, 2, 3].into_iter())
            .unwrap()
            .into_iter()
            .collect();
        found.sort_unstable();
        assert_eq!(found, vec![1, 2]);
    }
}
