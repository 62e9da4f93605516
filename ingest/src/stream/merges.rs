//! When a stream merges the small files its batches leave: one table every few batches, the
//! tables in turn, so that no batch waits for more than one merge. The landing's tables are
//! merged by the landing, between its commits; gold's by the gold refresh, after its commit.

use crate::gold::GoldRefresh;
use crate::pipeline::Writer;
use crate::storage::{Merged, TableRoot};
use crate::tables::{BRONZE_EVENTS, GOLD_TABLES, QUALITY_RUNS, QUARANTINE, SILVER_EVENTS};

/// Batches between two merges (each of one table).
pub(super) const BATCHES_PER_MERGE: u64 = 5;

/// The tables a landing writes, each batch.
const LANDING_TABLES: [&str; 4] = [BRONZE_EVENTS, SILVER_EVENTS, QUARANTINE, QUALITY_RUNS];

/// The tables of one side (landing or gold) in turn, one every [`BATCHES_PER_MERGE`] batches.
#[derive(Debug)]
pub(super) struct Rotation {
    tables: &'static [&'static str],
    batches: u64,
    next: usize,
}

impl Rotation {
    /// The landing's tables.
    pub(super) fn landing() -> Self {
        Self::of(&LANDING_TABLES)
    }

    /// Gold's tables.
    pub(super) fn gold() -> Self {
        Self::of(&GOLD_TABLES)
    }

    fn of(tables: &'static [&'static str]) -> Self {
        Self {
            tables,
            batches: 0,
            next: 0,
        }
    }

    /// Counts a batch; returns the table to merge after it, if one is due.
    pub(super) fn after_batch(&mut self) -> Option<&'static str> {
        self.batches += 1;
        if !self.batches.is_multiple_of(BATCHES_PER_MERGE) {
            return None;
        }
        let table = self.tables[self.next];
        self.next = (self.next + 1) % self.tables.len();
        Some(table)
    }
}

/// Merges a landing table's small files. A merge that fails is logged and skipped: it only
/// saves later work, and the next turn tries again.
pub(super) async fn landing(writer: &mut Writer, root: &TableRoot, name: &'static str) {
    logged(name, writer.merge_small_files(root, name).await);
}

/// Merges a gold table's small files; see [`landing`].
pub(super) async fn gold(refresh: &GoldRefresh, name: &'static str) {
    logged(name, refresh.merge_small_files(name).await);
}

fn logged(name: &str, merged: crate::Result<Option<Merged>>) {
    match merged {
        Ok(Some(m)) => tracing::debug!(
            table = name,
            removed = m.files_removed,
            added = m.files_added,
            "small files merged"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(table = name, error = %e, "merging small files failed; trying again at its next turn")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_takes_its_turn_every_few_batches() {
        let mut landing = Rotation::landing();
        let due: Vec<Option<&str>> = (0..BATCHES_PER_MERGE * 5)
            .map(|_| landing.after_batch())
            .collect();
        let merged: Vec<&str> = due.iter().flatten().copied().collect();
        assert_eq!(
            merged,
            [
                BRONZE_EVENTS,
                SILVER_EVENTS,
                QUARANTINE,
                QUALITY_RUNS,
                BRONZE_EVENTS
            ]
        );
        assert_eq!(due.iter().filter(|d| d.is_some()).count(), 5);
        assert!(
            due[..BATCHES_PER_MERGE as usize - 1]
                .iter()
                .all(Option::is_none)
        );
    }
}
