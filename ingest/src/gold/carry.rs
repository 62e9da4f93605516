//! The rows of the patients a refresh did not rebuild, carried over into the tables it
//! rewrites, in the schema the rebuilt rows have.

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use deltalake::arrow::array::Int32Array;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::{Expr, col, lit};

use crate::error::{Error, Result};
use crate::storage::{Keys, WriteMode, column, scan_keyed};

/// The rows of `table` that do not belong to `ids`, in the schema of `like`.
pub(super) async fn kept_rows(
    table: &DeltaTable,
    name: &str,
    ids: &BTreeSet<String>,
    like: &RecordBatch,
) -> Result<Vec<RecordBatch>> {
    let keys = Keys {
        column: "patient_id",
        values: ids,
        keep: false,
    };
    kept_rows_where(table, name, lit(true), keys, like).await
}

/// The rows of `table` matching `filter` and `keys`, in the schema of `like`.
async fn kept_rows_where(
    table: &DeltaTable,
    name: &str,
    filter: Expr,
    keys: Keys<'_>,
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
    let batches = scan_keyed(table, name, &columns, filter, Some(keys), &[]).await?;
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

/// The rows and write of a month-partitioned, patient-keyed table (`month` column) when only
/// the patients `ids` were rebuilt into `rebuilt`: the months their old and new rows fall in
/// are replaced, with the other patients' rows of those months carried over.
pub(super) async fn by_month(
    table: &DeltaTable,
    name: &str,
    month: &str,
    ids: &BTreeSet<String>,
    rebuilt: RecordBatch,
) -> Result<(Vec<RecordBatch>, WriteMode)> {
    let keys = |keep| Keys {
        column: "patient_id",
        values: ids,
        keep,
    };
    let mut months: BTreeSet<i32> = BTreeSet::new();
    let months_of = |b: &RecordBatch, months: &mut BTreeSet<i32>| -> Result<()> {
        months.extend(column::<Int32Array>(b, name, month)?.iter().flatten());
        Ok(())
    };
    months_of(&rebuilt, &mut months)?;
    for b in scan_keyed(table, name, &[month], lit(true), Some(keys(true)), &[]).await? {
        months_of(&b, &mut months)?;
    }
    if months.is_empty() {
        // Nothing to replace: an empty append still records what the table holds.
        return Ok((vec![rebuilt], WriteMode::Append));
    }
    let in_months = col(month).in_list(months.iter().map(|m| lit(*m)).collect(), false);
    let mut batches = vec![];
    let kept = kept_rows_where(table, name, in_months.clone(), keys(false), &rebuilt).await?;
    batches.push(rebuilt);
    batches.extend(kept);
    Ok((batches, WriteMode::Replace(in_months)))
}
