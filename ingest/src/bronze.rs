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
use crate::storage::{TableRoot, append, txn_version, update};
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
        Self::with_capacity(0, 0)
    }

    /// A chunk with room for `records` records of `bytes` raw bytes in all (sized from the
    /// previous chunk, so large chunks do not grow by copying).
    pub(crate) fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            source: StringBuilder::new(),
            partition: Int32Builder::with_capacity(records),
            line: Int64Builder::with_capacity(records),
            received_at: Vec::with_capacity(records),
            raw: BinaryBuilder::with_capacity(records, bytes + bytes / 8),
            bytes: 0,
            positions: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        source: &str,
        partition: Option<i32>,
        line: i64,
        received_at: i64,
        raw: &[u8],
    ) {
        self.source.append_value(source);
        self.partition.append_option(partition);
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

    /// Reads the commits other writers added since this table was loaded (only those) and
    /// returns the sequence of the last bronze batch now.
    pub(crate) async fn latest_seq(&mut self) -> Result<i64> {
        update(&mut self.table, self.name).await?;
        Ok(txn_version(&self.table, self.name, BRONZE_SEQ_APP)
            .await?
            .unwrap_or(0))
    }

    /// The consumed position recorded for a source, if any.
    pub(crate) async fn position(&self, app_id: &str) -> Result<Option<i64>> {
        txn_version(&self.table, self.name, app_id).await
    }

    /// Turns a chunk into the next bronze batch, not yet committed.
    pub(crate) fn prepare(&self, chunk: BronzeChunk) -> Result<Landing> {
        let seq = self.seq + 1;
        let batch_id = uuid::Uuid::new_v4().to_string();
        let (batch, positions) = chunk.finish(seq, &batch_id, self.name)?;
        let mut txns: Vec<Transaction> = positions
            .into_iter()
            .map(|(id, pos)| Transaction::new(id, pos))
            .collect();
        txns.push(Transaction::new(BRONZE_SEQ_APP, seq));
        Ok(Landing { seq, batch, txns })
    }

    /// The commit of a prepared batch, as a future that owns what it needs (so it can run on
    /// a task of its own); hand its table to [`Bronze::landed`].
    pub(crate) fn write(
        &self,
        landing: &Landing,
    ) -> impl Future<Output = Result<DeltaTable>> + Send + 'static {
        append(
            self.table.clone(),
            self.name,
            vec![landing.batch.clone()],
            landing.txns.clone(),
            &[],
        )
    }

    /// Records that `landing` was committed, leaving `table`.
    pub(crate) fn landed(&mut self, table: DeltaTable, landing: &Landing) {
        self.table = table;
        self.seq = landing.seq;
    }

    /// Commits a chunk with its positions; returns the batch as written, with its sequence.
    pub(crate) async fn commit(&mut self, chunk: BronzeChunk) -> Result<(i64, RecordBatch)> {
        let landing = self.prepare(chunk)?;
        let table = self.write(&landing).await?;
        self.landed(table, &landing);
        Ok((landing.seq, landing.batch))
    }
}

/// A bronze batch with its sequence and the application transactions of its commit.
#[derive(Debug)]
pub(crate) struct Landing {
    pub(crate) seq: i64,
    pub(crate) batch: RecordBatch,
    txns: Vec<Transaction>,
}
