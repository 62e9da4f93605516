//! When a stream merges the small files its landing leaves: one table every few batches, the
//! tables in turn, so that no batch waits for more than one merge. (Gold's rewrites merge the
//! small files of the months they touch themselves: `gold/changes.rs`.)

use crate::pipeline::Writer;
use crate::storage::TableRoot;
use crate::tables::{BRONZE_EVENTS, QUALITY_RUNS, QUARANTINE, SILVER_EVENTS};

/// Batches between two merges (each of one table).
pub(super) const BATCHES_PER_MERGE: u64 = 5;

/// The tables a landing writes, each batch.
const LANDING_TABLES: [&str; 4] = [BRONZE_EVENTS, SILVER_EVENTS, QUARANTINE, QUALITY_RUNS];

/// The landing's tables in turn, one every [`BATCHES_PER_MERGE`] batches.
#[derive(Debug, Default)]
pub(super) struct Rotation {
    batches: u64,
    next: usize,
}

impl Rotation {
    /// Counts a batch; returns the table to merge after it, if one is due.
    pub(super) fn after_batch(&mut self) -> Option<&'static str> {
        self.batches += 1;
        if !self.batches.is_multiple_of(BATCHES_PER_MERGE) {
            return None;
        }
        let table = LANDING_TABLES[self.next];
        self.next = (self.next + 1) % LANDING_TABLES.len();
        Some(table)
    }
}

/// Merges a landing table's small files. A merge that fails is logged and skipped: it only
/// saves later work, and the table's next turn tries again.
pub(super) async fn merge(writer: &mut Writer, root: &TableRoot, name: &'static str) {
    match writer.merge_small_files(root, name).await {
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
        let mut landing = Rotation::default();
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
