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
    /// A stream source (a Kafka broker) failed.
    #[error("{0}; check the broker address, credentials and [kafka] settings")]
    Source(String),
    /// An index derived from the tables failed (it can be removed: it is rebuilt).
    #[error("index `{path}`: {message}; it is derived from the tables and rebuilt if removed")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A bug in patientflow: an invariant did not hold.
    #[error("internal error (please report): {0}")]
    Internal(String),
    /// Delta Lake failed.
    #[error("delta table `{table}`: {message}")]
    Delta {
        /// Table name (for example `bronze/patient_events`).
        table: String,
        /// What failed, with any SAS signature redacted.
        message: String,
        /// The delta-rs error.
        source: Box<deltalake::DeltaTableError>,
    },
    /// Another writer committed to a table of a remote root at the same time.
    #[error(
        "delta table `{table}`: another writer committed to it at the same time ({detail}); \
         this commit was refused whole and nothing of it landed; run again once the other \
         writer is done (one writer per root at a time)"
    )]
    Conflict {
        /// Table name.
        table: String,
        /// Delta's conflict.
        detail: String,
    },
    /// The object store refused the credentials (ADLS Gen2, Azure Blob).
    #[error(
        "delta table `{table}`: the storage account refused the credentials ({detail}); check \
         them: AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, \
         a service principal (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID), or the \
         managed identity's role on the container (Storage Blob Data Contributor); \
         docs/configuration.md, \"ADLS Gen2\""
    )]
    StorageAccess {
        /// Table name.
        table: String,
        /// The store's answer, first line, redacted.
        detail: String,
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
        let message = redact(&source.to_string());
        let refused = [
            "lacked the necessary privileges",
            "Unauthenticated",
            "401 Unauthorized",
            "403 Forbidden",
        ];
        if refused.iter().any(|r| message.contains(r)) {
            let first = message.lines().next().unwrap_or_default();
            let detail = first.split(": <?xml").next().unwrap_or(first).to_string();
            return Self::StorageAccess {
                table: table.to_string(),
                detail,
            };
        }
        let concurrent = [
            "Concurrent",
            "Metadata changed",
            "already exists",
            "onflict",
        ];
        if matches!(source, deltalake::DeltaTableError::Transaction { .. })
            && concurrent.iter().any(|c| message.contains(c))
        {
            return Self::Conflict {
                table: table.to_string(),
                detail: message,
            };
        }
        Self::Delta {
            table: table.to_string(),
            message,
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

/// `text` with the signature of any SAS token in it replaced: a request URL in an object-store
/// error carries the SAS query, and errors are logged.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("REDACTED");
        rest = &rest[i + 4..];
        let end = rest
            .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sas_signature_never_reaches_a_message() {
        assert_eq!(
            redact("GET https://a.blob.core.windows.net/c/x?sv=2022&sig=abc%2Bdef&se=1 failed"),
            "GET https://a.blob.core.windows.net/c/x?sv=2022&sig=REDACTED&se=1 failed"
        );
        assert_eq!(redact("no secret"), "no secret");
    }
}
