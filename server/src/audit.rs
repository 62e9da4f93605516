//! The audit trail: every query any door answers or refuses goes to the log at once and to
//! the Delta table `ops/audit` in batches (every two seconds, and on shutdown).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use patientflow_ingest::TableRoot;
use patientflow_ingest::tables::{AUDIT, AUDIT_SCHEMA};
use patientflow_sql::{AuditEntry, AuditSink};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// How often buffered entries are written.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// One audited query, its statement's hash and when it was answered.
#[derive(Debug)]
struct Row {
    entry: AuditEntry,
    statement_sha256: String,
    at_micros: i64,
}

/// Sends audit entries to the writer task; cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub(crate) struct AuditLog {
    tx: mpsc::UnboundedSender<Row>,
}

impl AuditLog {
    /// Starts the writer for `root`; it stops, after a last flush, when every sender is gone.
    pub(crate) fn start(root: TableRoot) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(root, rx));
        (Self { tx }, task)
    }
}

impl AuditSink for AuditLog {
    fn record(&self, entry: AuditEntry) {
        let statement_sha256 = sha256_hex(entry.statement.as_bytes());
        tracing::info!(
            target: "patientflow::audit",
            door = entry.door,
            oid = %entry.principal.oid,
            roles = ?entry.principal.roles,
            statement_sha256 = %statement_sha256,
            tables = ?entry.tables,
            rows = entry.rows,
            duration_ms = entry.duration.as_secs_f64() * 1e3,
            cached = entry.cached,
            outcome = entry.outcome,
        );
        let at_micros = chrono::Utc::now().timestamp_micros();
        // A closed channel means the server is stopping; the log line above still stands.
        let _ = self.tx.send(Row {
            entry,
            statement_sha256,
            at_micros,
        });
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn write_loop(root: TableRoot, mut rx: mpsc::UnboundedReceiver<Row>) {
    let mut buffer = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            row = rx.recv() => match row {
                Some(row) => buffer.push(row),
                None => break,
            },
            _ = tick.tick() => flush(&root, &mut buffer).await,
        }
    }
    flush(&root, &mut buffer).await;
}

async fn flush(root: &TableRoot, buffer: &mut Vec<Row>) {
    if buffer.is_empty() {
        return;
    }
    let rows = std::mem::take(buffer);
    let written = match batch(&rows) {
        Ok(batch) => root
            .append(AUDIT, vec![batch])
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = written {
        // Keep them for the next try; the log already has every entry.
        tracing::error!(error = %e, rows = rows.len(), "cannot write ops/audit; retrying");
        *buffer = rows;
    }
}

fn batch(rows: &[Row]) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let strings = |f: &dyn Fn(&Row) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let lists = |f: &dyn Fn(&Row) -> &[String]| -> ArrayRef {
        let mut builder = ListBuilder::new(StringBuilder::new());
        for row in rows {
            for v in f(row) {
                builder.values().append_value(v);
            }
            builder.append(true);
        }
        Arc::new(builder.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.at_micros))
                .with_timezone("UTC"),
        ),
        strings(&|r| r.entry.principal.oid.clone()),
        strings(&|r| r.entry.principal.tid.clone()),
        lists(&|r| &r.entry.principal.roles),
        strings(&|r| r.entry.door.to_string()),
        strings(&|r| r.statement_sha256.clone()),
        lists(&|r| &r.entry.tables),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.entry.rows as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.entry.duration.as_secs_f64() * 1e3),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.entry.cached)),
        )),
        strings(&|r| r.entry.outcome.to_string()),
    ];
    RecordBatch::try_new(AUDIT_SCHEMA.clone(), columns)
}
