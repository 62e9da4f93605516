//! A table's small files merged while a stream writes it: every micro-batch adds a file or a
//! few to each table it writes, and each file costs every later commit and reader something
//! (delta-rs re-parses each file's statistics at each update), so a stream that never merged
//! them would slow down by the hour. `maintain` still compacts to full-size files; this keeps
//! the count down in between, touching only small files so that each merge stays cheap.

use std::collections::BTreeMap;

use deltalake::DeltaTable;
use deltalake::arrow::compute::concat_batches;
use futures::TryStreamExt;

use super::{DataFile, StagedTable, TableRoot, decode_file, fetch_file};
use crate::error::{Error, Result};

/// Files smaller than this are merged as a stream goes; larger ones wait for `maintain`.
pub(crate) const SMALL_FILE_BYTES: u64 = 1 << 20;

/// At most this many bytes of small files are merged at once (the rest at the table's next
/// turn), so that no merge holds a stream up for long, also on a root whose tables were left
/// in small files.
const MERGED_AT_ONCE_BYTES: u64 = 8 << 20;

/// What a merge did to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Merged {
    pub(crate) files_removed: usize,
    pub(crate) files_added: usize,
}

/// Merges the small files of `table` ([`SMALL_FILE_BYTES`]), partition by partition where a
/// partition has two or more, into one file per partition, in one commit that changes no row
/// (`dataChange: false`, as a compaction). `None` when there was nothing to merge. The caller
/// holds the writer lock and brings its copy of `table` up to date afterwards.
pub(crate) async fn merge_small_files(
    root: &TableRoot,
    table: &DeltaTable,
    name: &'static str,
) -> Result<Option<Merged>> {
    let Ok(state) = table.snapshot() else {
        return Ok(None);
    };
    let small: Vec<DataFile> = state
        .snapshot()
        .file_views(table.log_store().as_ref(), None)
        .try_filter(|f| futures::future::ready(f.size() < SMALL_FILE_BYTES as i64))
        .try_collect()
        .await
        .map_err(|e| Error::delta(name, e))?;
    let mut partitions: BTreeMap<Vec<(String, Option<String>)>, Vec<DataFile>> = BTreeMap::new();
    for file in small {
        let mut key: Vec<_> = file.partition_values_map().into_iter().collect();
        key.sort();
        partitions.entry(key).or_default().push(file);
    }
    let mut chosen: Vec<Vec<DataFile>> = Vec::new();
    let mut budget = MERGED_AT_ONCE_BYTES;
    for files in partitions.into_values().filter(|files| files.len() > 1) {
        let mut taken = Vec::new();
        for file in files {
            if budget == 0 {
                break;
            }
            budget = budget.saturating_sub(file.size() as u64);
            taken.push(file);
        }
        if taken.len() > 1 {
            chosen.push(taken);
        }
        if budget == 0 {
            break;
        }
    }
    if chosen.is_empty() {
        return Ok(None);
    }
    let like = state.snapshot().arrow_schema();
    let partition_by: Vec<&str> = state
        .metadata()
        .partition_columns()
        .iter()
        .map(String::as_str)
        .collect();
    let mut staged = StagedTable::new(root, name, like.clone(), &partition_by)?;
    let mut replaced = Vec::new();
    for files in chosen {
        let mut rows = Vec::with_capacity(files.len());
        for file in &files {
            let bytes = fetch_file(table, name, file).await?;
            rows.push(decode_file(bytes, name, file, &like)?);
        }
        let rows = concat_batches(&like, &rows).map_err(|e| Error::arrow(name, e))?;
        staged.write(rows).await?;
        replaced.extend(files);
    }
    let files_added = staged.commit_compaction(table, &replaced).await?;
    Ok(Some(Merged {
        files_removed: replaced.len(),
        files_added,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::kernel::Transaction;

    use super::*;
    use crate::storage::{append, row_count, txn_version, update};

    const NAME: &str = "silver/t";

    /// Rows of `month` numbered from `first`, each with `payload_bytes` of incompressible
    /// bytes.
    fn rows(month: i32, first: i64, n: usize, payload_bytes: usize) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("month", DataType::Int32, false),
            Field::new("n", DataType::Int64, false),
            Field::new("payload", DataType::Binary, false),
        ]);
        let mut state = first as u64 + 1;
        let payload: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                (0..payload_bytes)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (state >> 56) as u8
                    })
                    .collect()
            })
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![month; n])),
            Arc::new(Int64Array::from_iter_values(first..first + n as i64)),
            Arc::new(BinaryArray::from_iter_values(payload.iter())),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[tokio::test]
    async fn small_files_are_merged_per_partition_keeping_every_row_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let mut table = root.open(NAME).await.unwrap();
        // One large file (not merged), then small files: three in month 1, two in month 2,
        // one in month 3 (alone: nothing to merge it with).
        let batches = [
            rows(1, 0, 1, 3 * SMALL_FILE_BYTES as usize / 2),
            rows(1, 10, 3, 8),
            rows(1, 20, 3, 8),
            rows(1, 30, 3, 8),
            rows(2, 40, 3, 8),
            rows(2, 50, 3, 8),
            rows(3, 60, 3, 8),
        ];
        for (i, batch) in batches.into_iter().enumerate() {
            let txns = vec![Transaction::new("source", i as i64)];
            table = append(table, NAME, vec![batch], txns, &["month"])
                .await
                .unwrap();
        }
        let before = table.version().unwrap();

        let merged = merge_small_files(&root, &table, NAME).await.unwrap();
        assert_eq!(
            merged,
            Some(Merged {
                files_removed: 5,
                files_added: 2
            })
        );
        update(&mut table, NAME).await.unwrap();
        assert_eq!(table.version(), Some(before + 1));
        let snapshot = table.snapshot().unwrap();
        assert_eq!(snapshot.log_data().num_files(), 4);
        assert_eq!(row_count(&table, NAME).await.unwrap(), 1 + 6 * 3);
        assert_eq!(txn_version(&table, NAME, "source").await.unwrap(), Some(6));
        // Every row is still there, with its partition value.
        let read = crate::storage::scan(
            &table,
            NAME,
            &["month", "n"],
            deltalake::datafusion::prelude::lit(true),
            &[],
        )
        .await
        .unwrap();
        let mut seen: Vec<(i32, i64)> = Vec::new();
        for b in &read {
            let month = crate::storage::column::<Int32Array>(b, NAME, "month").unwrap();
            let n = crate::storage::column::<Int64Array>(b, NAME, "n").unwrap();
            seen.extend(
                month
                    .values()
                    .iter()
                    .copied()
                    .zip(n.values().iter().copied()),
            );
        }
        seen.sort();
        let mut expected: Vec<(i32, i64)> = vec![(1, 0)];
        for (month, first) in [(1, 10), (1, 20), (1, 30), (2, 40), (2, 50), (3, 60)] {
            expected.extend((first..first + 3).map(|n| (month, n)));
        }
        assert_eq!(seen, expected);

        // The commit is a compaction: no data changed.
        let log = dir
            .path()
            .join(NAME)
            .join(format!("_delta_log/{:020}.json", before + 1));
        let actions: Vec<serde_json::Value> = std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let operation = actions
            .iter()
            .find_map(|a| a["commitInfo"]["operation"].as_str());
        assert_eq!(operation, Some("OPTIMIZE"));
        let files: Vec<&serde_json::Value> = actions
            .iter()
            .filter_map(|a| a.get("add").or(a.get("remove")))
            .collect();
        assert_eq!(files.len(), 7);
        assert!(files.iter().all(|f| f["dataChange"] == false));

        // Nothing is left to merge.
        assert_eq!(merge_small_files(&root, &table, NAME).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_merge_takes_at_most_its_budget_and_leaves_the_rest_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        let mut table = root.open(NAME).await.unwrap();
        // Twelve small files of ~0.9 MB in one partition: ~10.8 MB, over one merge's 8 MiB.
        let size = 9 * SMALL_FILE_BYTES as usize / 10;
        for i in 0..12 {
            let txns = vec![Transaction::new("source", i)];
            table = append(table, NAME, vec![rows(1, i, 1, size)], txns, &["month"])
                .await
                .unwrap();
        }
        let mut merges = Vec::new();
        while let Some(merged) = merge_small_files(&root, &table, NAME).await.unwrap() {
            merges.push(merged);
            update(&mut table, NAME).await.unwrap();
        }
        // Eight files stay within the first merge's budget and the ninth exhausts it; the
        // three left go at the next.
        let merged = |files_removed| Merged {
            files_removed,
            files_added: 1,
        };
        assert_eq!(merges, [merged(9), merged(3)]);
        assert_eq!(table.snapshot().unwrap().log_data().num_files(), 2);
        assert_eq!(row_count(&table, NAME).await.unwrap(), 12);
    }
}
