//! Errors of the query engine.

use std::time::Duration;

use datafusion::error::DataFusionError;

use crate::engine::{Admission, Refusal};

/// A query-engine error; the variants say whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement is not SQL, or not one statement.
    #[error("SQL does not parse: {0}")]
    Syntax(String),
    /// The statement would change something; only reads run.
    #[error(
        "`{statement}` statements are not allowed: only read-only statements run (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE)"
    )]
    NotReadOnly {
        /// The statement's leading keyword(s), e.g. `INSERT`.
        statement: String,
    },
    /// The query is wrong: unknown table or column, type error, unknown metric…
    #[error("{0}")]
    InvalidQuery(String),
    /// The query ran past its time limit and was cancelled.
    #[error(
        "query cancelled after {0:?} (the query time limit); narrow it with filters or a LIMIT"
    )]
    Timeout(Duration),
    /// The principal is not granted what the query reads.
    #[error("{0}")]
    Forbidden(String),
    /// The query needed more memory than its limit, or its result is too large.
    #[error("query cancelled: {0}")]
    ResourcesExhausted(String),
    /// Too many queries at once: the queue was full, or the query waited past the queue
    /// timeout without a slot. Nothing ran; the client should retry after `retry_after`.
    #[error("the server is busy: {detail}; retry after {} s", retry_after.as_secs())]
    Overloaded {
        /// Which limit refused it.
        reason: Refusal,
        /// When a retry stands a chance.
        retry_after: Duration,
        /// The limit, in words.
        detail: String,
    },
    /// Storage failed under the query: the table root is gone or unreachable, a Delta log
    /// entry is damaged, a data file is missing or unreadable. Other tables still answer;
    /// details are logged.
    #[error("storage: {0}")]
    Unavailable(String),
    /// Something failed inside the engine (I/O, a corrupt table); details are logged.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The query engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        use datafusion::arrow::error::ArrowError;
        if let Some(denied) = e.iter().find_map(|e| match e {
            DataFusionError::External(inner) => inner.downcast_ref::<crate::rbac::AccessDenied>(),
            _ => None,
        }) {
            return Error::Forbidden(denied.to_string());
        }
        if let Some(fault) = storage_fault(&e) {
            return fault;
        }
        let root = e.find_root();
        match root {
            DataFusionError::ResourcesExhausted(m) => Error::ResourcesExhausted(m.clone()),
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..) => Error::InvalidQuery(root.to_string()),
            DataFusionError::NotImplemented(m) => {
                Error::InvalidQuery(format!("not supported: {m}"))
            }
            DataFusionError::ArrowError(inner, _) => match inner.as_ref() {
                ArrowError::CastError(m) | ArrowError::ParseError(m) => {
                    Error::InvalidQuery(m.clone())
                }
                ArrowError::DivideByZero => Error::InvalidQuery("division by zero".into()),
                _ => Error::Internal(root.to_string()),
            },
            _ => Error::Internal(root.to_string()),
        }
    }
}

/// The storage fault in `e`'s chain, if any, as [`Error::Unavailable`] (the detail logged).
/// The chain is followed through every error's `source`: a file that vanished reaches here
/// as an object-store error inside a Parquet error inside an Arrow error.
fn storage_fault(e: &DataFusionError) -> Option<Error> {
    use deltalake::logstore::object_store;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(current) = next {
        if let Some(patientflow_semantic::Error::Table { table, source }) = current.downcast_ref() {
            return Some(unavailable(Some(table), &source.to_string()));
        }
        let storage = current.is::<deltalake::DeltaTableError>()
            || current.is::<object_store::Error>()
            || current.is::<std::io::Error>()
            || matches!(
                current.downcast_ref(),
                Some(
                    DataFusionError::ObjectStore(_)
                        | DataFusionError::IoError(_)
                        | DataFusionError::ParquetError(_)
                )
            );
        if storage {
            return Some(unavailable(None, &current.to_string()));
        }
        next = current.source();
    }
    None
}

/// [`Error::Unavailable`] for a storage failure described by `detail` (logged, not sent: it
/// names paths), reading `table` when known.
fn unavailable(table: Option<&str>, detail: &str) -> Error {
    tracing::warn!(table, %detail, "storage failed under a query");
    let what = table.map_or_else(|| "a table".to_string(), |t| format!("table {t}"));
    let lower = detail.to_lowercase();
    let cause = if lower.contains("does not exist")
        || (lower.contains("no such file") && !lower.contains(".parquet"))
    {
        "its storage is gone or unreachable (the table root moved, unmounted or offline)"
    } else if lower.contains("not found") || lower.contains("no such file") {
        "one of its data files is missing from storage (deleted or vacuumed under the query)"
    } else if lower.contains("json") || (lower.contains("log") && lower.contains("parse")) {
        "its Delta log cannot be read (a damaged or truncated commit)"
    } else if lower.contains("parquet") || lower.contains("eof") {
        "one of its data files cannot be decoded (damaged or truncated)"
    } else {
        "its storage did not answer"
    };
    Error::Unavailable(format!(
        "{what} cannot be read: {cause}; other tables still answer, and this one does again once storage is repaired (the server log has the details)"
    ))
}

impl Error {
    /// The refusal of a query by `admission`.
    pub(crate) fn overloaded(reason: Refusal, admission: &Admission) -> Self {
        let config = admission.config();
        let detail = match reason {
            Refusal::QueueFull => format!(
                "{} queries are already waiting for one of {} slots (serve.max_queued_queries)",
                config.max_queued, config.max_executing
            ),
            Refusal::QueueTimeout => format!(
                "the query waited {} s for one of {} slots (serve.queue_timeout_secs) and did not run",
                config.queue_timeout.as_secs(),
                config.max_executing
            ),
        };
        Error::Overloaded {
            reason,
            retry_after: admission.retry_after(),
            detail,
        }
    }

    /// The outcome the audit records for this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            Error::Forbidden(_) => "denied",
            Error::Syntax(_) | Error::NotReadOnly { .. } | Error::InvalidQuery(_) => "invalid",
            Error::Timeout(_) => "timeout",
            Error::ResourcesExhausted(_) => "resources_exhausted",
            Error::Overloaded { reason, .. } => reason.as_str(),
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "failed",
        }
    }
}

impl From<patientflow_semantic::Error> for Error {
    fn from(e: patientflow_semantic::Error) -> Self {
        match e {
            patientflow_semantic::Error::Plan(df) => (*df).into(),
            patientflow_semantic::Error::Table { table, source } => {
                unavailable(Some(&table), &source.to_string())
            }
            other => Error::InvalidQuery(other.to_string()),
        }
    }
}
