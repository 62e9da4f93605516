//! Bronze: every message byte for byte, exactly once.
//!
//! A bronze commit carries the batch and, as Delta application transactions, the source
//! positions it consumed and its own sequence number, so a crash at any instant leaves either
//! the whole batch with its positions or neither.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Array, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondArray,
};
use deltalake::kernel::Transaction;

use crate::error::{Error, Result};
use crate::storage::{TableRoot, append, txn_version};
use crate::tables::{BRONZE_SCHEMA, BRONZE_SEQ_APP};

/// Accumulates raw records for one bronze commit.
#[derive(Debug)]
pub(crate) struct BronzeChunk {
    source: StringBuilder,
    partition: Int32Builder,
    line: Int64Builder,
    received_at: Vec<i64>,
    raw: BinaryBuilder,
    bytes: usize,
    /// (application id, position) to record with this commit, latest per id.
    positions: Vec<(String, i64)>,
}

impl BronzeChunk {
    pub(crate) fn new() -> Self {
        Self {
            source: StringBuilder::new(),
            partition: Int32Builder::new(),
            line: Int64Builder::new(),
            received_at: Vec::new(),
            raw: BinaryBuilder::new(),
            bytes: 0,
            positions: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, source: &str, line: i64, received_at: i64, raw: &[u8]) {
        self.source.append_value(source);
        self.partition.append_null();
        self.line.append_value(line);
        self.received_at.push(received_at);
        self.raw.append_value(raw);
        self.bytes += raw.len();
    }

    /// Records that `app_id` has been consumed up to `position` by this chunk.
    pub(crate) fn set_position(&mut self, app_id: &str, position: i64) {
        match self.positions.iter_mut().find(|(id, _)| id == app_id) {
            Some(entry) => entry.1 = position,
            None => self.positions.push((app_id.to_string(), position)),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.received_at.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn has_positions(&self) -> bool {
        !self.positions.is_empty()
    }

    fn finish(
        mut self,
        seq: i64,
        batch_id: &str,
        table: &str,
    ) -> Result<(RecordBatch, Vec<(String, i64)>)> {
        let n = self.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![seq; n])),
            Arc::new(deltalake::arrow::array::StringArray::from(vec![
                batch_id;
                n
            ])),
            Arc::new(self.source.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.line.finish()),
            Arc::new(TimestampMicrosecondArray::from(self.received_at).with_timezone("UTC")),
            Arc::new(self.raw.finish()),
        ];
        let batch = RecordBatch::try_new(BRONZE_SCHEMA.clone(), columns)
            .map_err(|e| Error::arrow(table, e))?;
        Ok((batch, self.positions))
    }
}

/// A bronze table with its sequence counter.
#[derive(Debug)]
pub(crate) struct Bronze {
    name: &'static str,
    pub(crate) table: DeltaTable,
    /// Sequence number of the last committed bronze batch (0 before the first).
    pub(crate) seq: i64,
}

impl Bronze {
    /// Opens the bronze table `name` under `root`.
    pub(crate) async fn open(root: &TableRoot, name: &'static str) -> Result<Self> {
        let table = root.open(name).await?;
        let seq = txn_version(&table, name, BRONZE_SEQ_APP)
            .await?
            .unwrap_or(0);
        Ok(Self { name, table, seq })
    }

    /// The consumed position recorded for a source, if any.
    pub(crate) async fn position(&self, app_id: &str) -> Result<Option<i64>> {
        txn_version(&self.table, self.name, app_id).await
    }

    /// Commits a chunk with its positions; returns the batch as written, with its sequence.
    pub(crate) async fn commit(&mut self, chunk: BronzeChunk) -> Result<(i64, RecordBatch)> {
        let seq = self.seq + 1;
        let batch_id = uuid::Uuid::new_v4().to_string();
        let (batch, positions) = chunk.finish(seq, &batch_id, self.name)?;
        let mut txns: Vec<Transaction> = positions
            .into_iter()
            .map(|(id, pos)| Transaction::new(id, pos))
            .collect();
        txns.push(Transaction::new(BRONZE_SEQ_APP, seq));
        self.table = append(
            self.table.clone(),
            self.name,
            vec![batch.clone()],
            txns,
            &[],
        )
        .await?;
        self.seq = seq;
        Ok((seq, batch))
    }
}
