//! The rows of the patients a refresh did not rebuild, carried over into the tables it
//! rewrites, in the schema the rebuilt rows have.

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::lit;

use crate::error::{Error, Result};
use crate::storage::{Keys, scan_keyed};

/// The rows of `table` that do not belong to `ids`, in the schema of `like`.
pub(super) async fn kept_rows(
    table: &DeltaTable,
    name: &str,
    ids: &BTreeSet<String>,
    like: &RecordBatch,
) -> Result<Vec<RecordBatch>> {
    let Ok(snapshot) = table.snapshot() else {
        return Ok(vec![]);
    };
    let existing: Vec<String> = snapshot
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect();
    let columns: Vec<&str> = existing.iter().map(String::as_str).collect();
    let keys = Keys {
        column: "patient_id",
        values: ids,
        keep: false,
    };
    let batches = scan_keyed(table, name, &columns, lit(true), Some(keys), &[]).await?;
    batches.iter().map(|b| conform(b, like, name)).collect()
}

/// `batch` with the columns and types of `like` (missing columns as NULL).
fn conform(batch: &RecordBatch, like: &RecordBatch, name: &str) -> Result<RecordBatch> {
    let columns = like
        .schema()
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => deltalake::arrow::compute::cast(c, f.data_type()),
            None => Ok(deltalake::arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow(name, e))?;
    RecordBatch::try_new(like.schema(), columns).map_err(|e| Error::arrow(name, e))
}
