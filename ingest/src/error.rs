//! The one error type of the ingest crate.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while producing, landing or refining data.
///
/// Variants say whose fault it is: bad input from the caller, an unusable location, a second
/// writer, or a failure of the storage layer underneath.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder given by the user cannot be read.
    #[error("cannot read `{path}`: {source}; check that the path exists and is readable")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file given by the user has content we cannot accept (reference data, config).
    #[error("invalid input in `{path}`: {reason}")]
    InvalidInput {
        /// The offending file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The table root cannot be used as a location.
    #[error("invalid table root `{root}`: {reason}")]
    InvalidRoot {
        /// What the user gave.
        root: String,
        /// Why it is not usable.
        reason: String,
    },
    /// Another process holds the writer lock of this table root.
    #[error(
        "another patientflow process is writing to `{root}` (lock `{lock}` is held); \
         wait for it to finish, or stop it, and run again"
    )]
    Busy {
        /// The table root.
        root: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// A bug in patientflow: an invariant did not hold.
    /// A stream source (a Kafka broker) failed.
    #[error("{0}; check the broker address, credentials and [kafka] settings")]
    Source(String),
    #[error("internal error (please report): {0}")]
    Internal(String),
    /// Delta Lake failed.
    #[error("delta table `{table}`: {source}")]
    Delta {
        /// Table name (for example `bronze/patient_events`).
        table: String,
        /// The delta-rs error.
        source: Box<deltalake::DeltaTableError>,
    },
    /// Arrow or DataFusion failed while building or reading batches.
    #[error("internal error while processing `{table}`: {source}")]
    Arrow {
        /// Table being processed.
        table: String,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn delta(table: &str, source: deltalake::DeltaTableError) -> Self {
        Self::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }

    pub(crate) fn arrow(
        table: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Arrow {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}
