//! A table rewritten in pieces: each piece's Parquet files are written (and its memory freed)
//! as soon as it is computed, and one commit at the end removes every file the table had and
//! adds every file written, so a reader sees the old table or the new one, never a part.

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{
    Action, Add, MetadataExt, Protocol, StructType, Transaction, new_metadata,
};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::TryStreamExt;

use super::compact::SMALL_FILE_BYTES;
use super::write::created_with;
use super::{DataFile, TableRoot, commit_properties, writer_properties};
use crate::error::{Error, Result};

/// The files of a table's next content, written but not committed yet.
pub(crate) struct StagedTable {
    name: &'static str,
    schema: SchemaRef,
    partition_by: Vec<String>,
    writer: RecordBatchWriter,
    adds: Vec<Add>,
}

impl std::fmt::Debug for StagedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedTable")
            .field("name", &self.name)
            .field("files", &self.adds.len())
            .finish()
    }
}

impl StagedTable {
    /// A rewrite of the table `name` under `root` into rows of `schema`, partitioned by
    /// `partition_by`.
    pub(crate) fn new(
        root: &TableRoot,
        name: &'static str,
        schema: SchemaRef,
        partition_by: &[&str],
    ) -> Result<Self> {
        let partition_by: Vec<String> = partition_by.iter().map(|c| c.to_string()).collect();
        let writer = RecordBatchWriter::try_new(
            root.table_url(name)?,
            schema.clone(),
            Some(partition_by.clone()),
            Some(root.storage_options().clone()),
        )
        .map_err(|e| Error::delta(name, e))?
        .with_writer_properties(writer_properties());
        Ok(Self {
            name,
            schema,
            partition_by,
            writer,
            adds: Vec::new(),
        })
    }

    /// Writes rows of the table's next content, one partition at a time: each partition's
    /// file is closed before the next is begun, so memory holds one open file whatever the
    /// number of partitions (ten years of months) the rows fall in.
    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        for part in by_partition(&batch, &self.partition_by, self.name)? {
            self.writer
                .write(part)
                .await
                .map_err(|e| Error::delta(self.name, e))?;
            self.flush().await?;
        }
        Ok(())
    }

    /// Closes the files of the rows buffered so far, freeing their memory.
    async fn flush(&mut self) -> Result<()> {
        let adds = self
            .writer
            .flush()
            .await
            .map_err(|e| Error::delta(self.name, e))?;
        self.adds.extend(adds);
        Ok(())
    }

    /// Replaces the table's content with the files written, in one commit that also records
    /// `txns`. The table's schema and partitioning become the staged ones.
    pub(crate) async fn commit(self, table: &DeltaTable, txns: Vec<Transaction>) -> Result<()> {
        self.commit_replacing(table, None, txns).await
    }

    /// Replaces the table's files `replaced` (all of them when `None`) with the files written,
    /// in one commit that also records `txns`. The table's schema and partitioning become the
    /// staged ones.
    pub(crate) async fn commit_replacing(
        self,
        table: &DeltaTable,
        replaced: Option<&[DataFile]>,
        txns: Vec<Transaction>,
    ) -> Result<()> {
        self.commit_files(table, replaced, txns, Change::Rows)
            .await
            .map(|_| ())
    }

    /// Replaces the table's files `replaced` with the files written, which hold the same rows,
    /// in one commit marked as changing no data (a compaction). Returns the files added.
    pub(crate) async fn commit_compaction(
        self,
        table: &DeltaTable,
        replaced: &[DataFile],
    ) -> Result<usize> {
        self.commit_files(table, Some(replaced), vec![], Change::Layout)
            .await
    }

    async fn commit_files(
        mut self,
        table: &DeltaTable,
        replaced: Option<&[DataFile]>,
        txns: Vec<Transaction>,
        change: Change,
    ) -> Result<usize> {
        let data_change = matches!(change, Change::Rows);
        self.flush().await?;
        let name = self.name;
        let delta = |e: deltalake::DeltaTableError| Error::delta(name, e);
        let schema: StructType = self
            .schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| Error::delta(name, e.into()))?;
        let mut actions = Vec::new();
        let snapshot = table.snapshot().ok();
        match snapshot {
            None => {
                let protocol: Protocol = serde_json::from_value(serde_json::json!({
                    "minReaderVersion": 1,
                    "minWriterVersion": 2,
                }))
                .map_err(|e| Error::delta(name, e.into()))?;
                actions.push(Action::Protocol(protocol));
                let configuration = created_with()
                    .into_iter()
                    .filter_map(|(key, value)| Some((key.to_string(), value?)));
                let metadata = new_metadata(&schema, &self.partition_by, configuration)
                    .map_err(|e| delta(e.into()))?;
                actions.push(Action::Metadata(metadata));
            }
            Some(state) => {
                let current = state.metadata();
                let same_layout = *current.partition_columns() == self.partition_by
                    && state.schema().as_ref() == &schema;
                if !same_layout {
                    let metadata =
                        new_metadata(&schema, &self.partition_by, current.configuration().clone())
                            .and_then(|m| m.with_table_id(current.id().to_string()))
                            .map_err(|e| delta(e.into()))?;
                    actions.push(Action::Metadata(metadata));
                }
                let removes: Vec<Action> = match replaced {
                    Some(files) => files
                        .iter()
                        .map(|f| Action::Remove(f.remove_action(data_change)))
                        .collect(),
                    None => state
                        .snapshot()
                        .file_views(table.log_store().as_ref(), None)
                        .map_ok(|f| Action::Remove(f.remove_action(true)))
                        .try_collect()
                        .await
                        .map_err(delta)?,
                };
                actions.extend(removes);
            }
        }
        let added = self.adds.len();
        actions.extend(
            self.adds
                .into_iter()
                .map(|add| Action::Add(Add { data_change, ..add })),
        );
        // Rewriting some files is how an update is committed (copy on write).
        let operation = match (replaced, change) {
            (Some(_), Change::Layout) => DeltaOperation::Optimize {
                predicate: None,
                target_size: SMALL_FILE_BYTES as i64,
            },
            (Some(_), Change::Rows) => DeltaOperation::Update { predicate: None },
            (None, _) => DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: Some(self.partition_by.clone()).filter(|p| !p.is_empty()),
                predicate: None,
            },
        };
        CommitBuilder::from(commit_properties(txns))
            .with_actions(actions)
            .build(
                snapshot.map(|s| s as &dyn deltalake::kernel::transaction::TableReference),
                table.log_store(),
                operation,
            )
            .await
            .map_err(delta)?;
        Ok(added)
    }
}

/// What a staged commit changes.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// The rows: an update or an overwrite.
    Rows,
    /// Only the files holding the same rows: a compaction.
    Layout,
}

/// The rows of `batch` grouped by their values of the `partition_by` columns (all of them
/// when there are none), in order of those values.
fn by_partition(
    batch: &RecordBatch,
    partition_by: &[String],
    name: &str,
) -> Result<Vec<RecordBatch>> {
    use deltalake::arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
    use deltalake::arrow::compute::{cast, take_record_batch};
    use deltalake::arrow::datatypes::DataType;
    if batch.num_rows() == 0 {
        return Ok(vec![]);
    }
    if partition_by.is_empty() {
        return Ok(vec![batch.clone()]);
    }
    let arrow = |e| Error::arrow(name, e);
    let values = partition_by
        .iter()
        .map(|c| {
            let missing = || std::io::Error::other(format!("partition column `{c}` is missing"));
            let values = batch
                .column_by_name(c)
                .ok_or_else(|| Error::arrow(name, missing()))?;
            cast(values, &DataType::Utf8).map_err(arrow)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let values: Vec<_> = values.iter().map(|v| v.as_string::<i32>()).collect();
    let mut rows: std::collections::BTreeMap<Vec<Option<&str>>, Vec<u32>> = Default::default();
    for i in 0..batch.num_rows() {
        let key = values
            .iter()
            .map(|v| v.is_valid(i).then(|| v.value(i)))
            .collect();
        rows.entry(key).or_default().push(i as u32);
    }
    rows.into_values()
        .map(|r| take_record_batch(batch, &UInt32Array::from(r)).map_err(arrow))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int32Array, Int64Array};

    use super::*;

    #[test]
    fn rows_are_grouped_by_partition_value_in_order_of_it() {
        let batch = RecordBatch::try_from_iter([
            (
                "month_key",
                Arc::new(Int32Array::from(vec![
                    Some(202602),
                    None,
                    Some(202601),
                    Some(202602),
                ])) as _,
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as _),
        ])
        .unwrap();
        let parts = by_partition(&batch, &["month_key".into()], "t").unwrap();
        let n = |b: &RecordBatch| {
            let n = b.column_by_name("n").unwrap();
            n.as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        // NULL first, then 202601, then 202602's two rows in their order.
        let got: Vec<Vec<i64>> = parts.iter().map(n).collect();
        assert_eq!(got, vec![vec![2], vec![3], vec![1, 4]]);
        // Unpartitioned: the batch as it is; no rows: nothing.
        assert_eq!(by_partition(&batch, &[], "t").unwrap().len(), 1);
        assert!(
            by_partition(&batch.slice(0, 0), &["month_key".into()], "t")
                .unwrap()
                .is_empty()
        );
    }
}
