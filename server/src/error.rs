//! Errors of the binary: the library crates', plus configuration, runtime and server failures.

use std::path::PathBuf;

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Ingest(#[from] patientflow_ingest::Error),
    #[error("config file `{path}`: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("jobs: {0}")]
    Jobs(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    Query(#[from] patientflow_sql::Error),
    #[error(transparent)]
    Model(#[from] patientflow_semantic::Error),
    #[error("authentication: {0}")]
    Auth(String),
    #[error(transparent)]
    Policy(#[from] patientflow_sql::rbac::PolicyError),
    #[error("query service: {0}")]
    Serve(String),
    #[error("synapse: {0}")]
    Synapse(String),
}

/// What to do about `e`, when its cause is one an operator can fix.
pub(crate) fn hint(e: &Error) -> Option<&'static str> {
    let text = e.to_string();
    if text.contains("No space left on device") || text.contains("os error 28") {
        return Some(
            "the disk under the table root is full: free space or grow the volume, then run the same command again; it resumes where it stopped and lands nothing twice",
        );
    }
    None
}
