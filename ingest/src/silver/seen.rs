//! The duplicate keys refinement checks records against, in memory or through silver's key
//! index.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::datafusion::prelude::{col, lit};

use super::keys::KeyIndex;
use super::{KeySet, dedupe_keys};
use crate::error::Result;
use crate::storage::TableRoot;
use crate::tables::SILVER_EVENTS;

/// The duplicate keys refinement checks records against: every key silver holds, in memory,
/// or — with the index — the keys of the batch at hand that silver holds, with those of this
/// writer's batches the index may not have yet.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    keys: KeySet,
    index: Option<Arc<KeyIndex>>,
    /// With the index: the keys this writer sent to silver, by bronze sequence, until the
    /// index covers them.
    pending: BTreeMap<i64, Vec<u128>>,
    /// With the index: the keys the batch at hand sends to silver.
    added: Vec<u128>,
}

impl Seen {
    /// The keys silver holds up to bronze sequence `done`: the index of `root`, or (another
    /// process holding it) every key loaded from `table`.
    pub(crate) async fn open(root: &TableRoot, table: &DeltaTable, done: i64) -> Result<Self> {
        Ok(match KeyIndex::open(root, table, done).await? {
            Some(index) => Self {
                index: Some(Arc::new(index)),
                ..Self::default()
            },
            None => {
                let upto = col("bronze_seq").lt_eq(lit(done));
                Self::in_memory(dedupe_keys(table, SILVER_EVENTS, upto).await?)
            }
        })
    }

    /// These keys, held in memory.
    pub(crate) fn in_memory(keys: KeySet) -> Self {
        Self {
            keys,
            ..Self::default()
        }
    }

    /// The index, to bring up to each silver commit.
    pub(crate) fn index(&self) -> Option<Arc<KeyIndex>> {
        self.index.clone()
    }

    pub(crate) fn contains(&self, key: &u128) -> bool {
        self.keys.contains(key)
    }

    /// Records that a row with `key` goes to silver.
    pub(crate) fn insert(&mut self, key: u128) {
        if self.keys.insert(key) && self.index.is_some() {
            self.added.push(key);
        }
    }

    /// Before refining a batch with these keys: with the index, looks them up.
    pub(crate) fn begin(&mut self, batch: impl Iterator<Item = u128>) -> Result<()> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        let covered = index.covered()?;
        self.pending.retain(|seq, _| *seq > covered);
        self.keys = index.existing(batch)?;
        self.keys.extend(self.pending.values().flatten().copied());
        Ok(())
    }

    /// After refining bronze batch `seq`: with the index, its keys wait for the index.
    pub(crate) fn end(&mut self, seq: i64) {
        if self.index.is_some() {
            self.pending.insert(seq, std::mem::take(&mut self.added));
        }
    }

    /// After another writer committed silver's batches `(before, done]` to `table`.
    pub(crate) async fn caught_up(
        &mut self,
        table: &DeltaTable,
        before: i64,
        done: i64,
    ) -> Result<()> {
        match &self.index {
            Some(index) => index.sync(table, done).await,
            None => {
                let since = col("bronze_seq")
                    .gt(lit(before))
                    .and(col("bronze_seq").lt_eq(lit(done)));
                self.keys
                    .extend(dedupe_keys(table, SILVER_EVENTS, since).await?);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::silver::keys::tests::add;

    #[tokio::test]
    async fn a_batch_sees_silver_s_keys_and_the_writer_s_uncommitted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let silver = add(&root, "silver/a", 1, &[1]).await;
        let mut seen = Seen::open(&root, &silver, 1).await.unwrap();
        let index = seen.index().expect("the index");

        // Batch 2: key 1 is in silver, key 2 is new and goes to silver.
        seen.begin([1, 2].into_iter()).unwrap();
        assert!(seen.contains(&1) && !seen.contains(&2));
        seen.insert(2);
        seen.end(2);
        // Batch 3, refined before batch 2 is committed: key 2 is seen all the same.
        seen.begin([2, 3].into_iter()).unwrap();
        assert!(seen.contains(&2) && !seen.contains(&3));
        seen.insert(3);
        seen.end(3);

        // Batch 2 committed: the index has key 2; batch 3's key still waits.
        let silver = add(&root, "silver/a", 2, &[2]).await;
        index.sync(&silver, 2).await.unwrap();
        seen.begin([2, 4].into_iter()).unwrap();
        assert!(seen.contains(&2) && seen.contains(&3) && !seen.contains(&4));

        // A second process finds the index open and holds every key silver has in memory.
        let other = Seen::open(&root, &silver, 2).await.unwrap();
        assert!(other.index().is_none());
        assert!(other.contains(&1) && other.contains(&2) && !other.contains(&3));
    }
}
