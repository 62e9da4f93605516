//! A table rewritten in pieces: each piece's Parquet files are written (and its memory freed)
//! as soon as it is computed, and one commit at the end removes every file the table had and
//! adds every file written, so a reader sees the old table or the new one, never a part.

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{
    Action, Add, MetadataExt, Protocol, StructType, Transaction, new_metadata,
};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::TryStreamExt;

use super::{TableRoot, writer_properties};
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
            None,
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

    /// Buffers rows of the table's next content.
    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.writer
            .write(batch)
            .await
            .map_err(|e| Error::delta(self.name, e))
    }

    /// Closes the files of the rows buffered so far, freeing their memory.
    pub(crate) async fn flush(&mut self) -> Result<()> {
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
    pub(crate) async fn commit(mut self, table: &DeltaTable, txns: Vec<Transaction>) -> Result<()> {
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
                let metadata =
                    new_metadata(&schema, &self.partition_by, Vec::<(String, String)>::new())
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
                let removes: Vec<Action> = state
                    .snapshot()
                    .file_views(table.log_store().as_ref(), None)
                    .map_ok(|f| Action::Remove(f.remove_action(true)))
                    .try_collect()
                    .await
                    .map_err(delta)?;
                actions.extend(removes);
            }
        }
        actions.extend(self.adds.into_iter().map(Action::Add));
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(self.partition_by.clone()).filter(|p| !p.is_empty()),
            predicate: None,
        };
        CommitBuilder::from(CommitProperties::default().with_application_transactions(txns))
            .with_actions(actions)
            .build(
                snapshot.map(|s| s as &dyn deltalake::kernel::transaction::TableReference),
                table.log_store(),
                operation,
            )
            .await
            .map_err(delta)?;
        Ok(())
    }
}
