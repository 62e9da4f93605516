//! Errors of the semantic layer.

use datafusion::error::DataFusionError;

/// A semantic-layer error; the variants say whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file could not be read or is not a valid model.
    #[error("semantic model {origin}: {reason}")]
    Model {
        /// Where the model came from (a path, or `built-in`).
        origin: String,
        /// What is wrong, and where.
        reason: String,
    },
    /// The query asks for something the model does not have, or combines things that do not
    /// go together. The message lists what exists.
    #[error("{0}")]
    InvalidQuery(String),
    /// A table of the catalog could not be opened.
    #[error("table `{table}`: {source}")]
    Table {
        /// Catalog name of the table (`gold.fact_admission`).
        table: String,
        /// The Delta error.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// Building the plan failed inside DataFusion.
    #[error(transparent)]
    Plan(Box<DataFusionError>),
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Error::Plan(Box::new(e))
    }
}

/// The semantic layer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::Plan(e) => *e,
            other => DataFusionError::Plan(other.to_string()),
        }
    }
}
