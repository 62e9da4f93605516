//! Reading tables through DataFusion: filtered, projected, ordered scans, optionally
//! restricted to a set of keys, collected or streamed.

use std::collections::BTreeSet;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::logical_expr::{JoinType, cast};
use deltalake::datafusion::prelude::{DataFrame, Expr, SessionContext, col};

use crate::error::{Error, Result};

/// The column `name` of `batch` as the array type `T`, or an error naming `table`.
pub(crate) fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    table: &str,
    name: &str,
) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            Error::arrow(
                table,
                std::io::Error::other(format!("column `{name}` is missing or of another type")),
            )
        })
}

/// Restricts a scan to the rows whose text `column` is (`keep`) or is not one of `values`.
/// It runs as a semi or anti join, so thousands of keys cost no deep predicate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys<'a> {
    pub(crate) column: &'a str,
    pub(crate) values: &'a BTreeSet<String>,
    pub(crate) keep: bool,
}

/// Reads all rows of `table` matching `filter`, ordered by `order`.
pub(crate) async fn scan(
    table: &DeltaTable,
    name: &str,
    columns: &[&str],
    filter: Expr,
    order: &[&str],
) -> Result<Vec<RecordBatch>> {
    scan_keyed(table, name, columns, filter, None, order).await
}

/// [`scan`], further restricted by `keys`.
pub(crate) async fn scan_keyed(
    table: &DeltaTable,
    name: &str,
    columns: &[&str],
    filter: Expr,
    keys: Option<Keys<'_>>,
    order: &[&str],
) -> Result<Vec<RecordBatch>> {
    let started = std::time::Instant::now();
    let Some(df) = frame(table, name, columns, filter, keys, order).await? else {
        return Ok(vec![]);
    };
    let batches = df.collect().await.map_err(|e| Error::arrow(name, e))?;
    tracing::debug!(
        table = name,
        rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        seconds = started.elapsed().as_secs_f64(),
        "scanned"
    );
    batches.iter().map(|b| without_views(b, name)).collect()
}

/// The rows of `table` matching `filter`, as a stream of batches read as they are consumed.
pub(crate) async fn scan_stream<'a>(
    table: &DeltaTable,
    name: &'a str,
    columns: &[&str],
    filter: Expr,
) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + use<'a>> {
    use futures::StreamExt;
    let stream = match frame(table, name, columns, filter, None, &[]).await? {
        Some(df) => Some(
            df.execute_stream()
                .await
                .map_err(|e| Error::arrow(name, e))?,
        ),
        None => None,
    };
    Ok(futures::stream::iter(stream)
        .flatten()
        .map(move |b| without_views(&b.map_err(|e| Error::arrow(name, e))?, name)))
}

/// The DataFrame of a scan; `None` for a table that does not exist yet.
async fn frame(
    table: &DeltaTable,
    name: &str,
    columns: &[&str],
    filter: Expr,
    keys: Option<Keys<'_>>,
    order: &[&str],
) -> Result<Option<DataFrame>> {
    if table.version().is_none() {
        return Ok(None);
    }
    let ctx = SessionContext::new();
    let df_err = |e: deltalake::datafusion::error::DataFusionError| Error::arrow(name, e);
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| Error::delta(name, e))?;
    let provider = table.table_provider().await.map_err(df_err)?;
    let mut df = ctx
        .read_table(provider)
        .map_err(df_err)?
        .filter(filter)
        .map_err(df_err)?;
    if let Some(keys) = keys {
        const KEY: &str = "__patientflow_key";
        let values: StringArray = keys.values.iter().map(|v| Some(v.as_str())).collect();
        let key_schema = Arc::new(Schema::new(vec![Field::new(KEY, DataType::Utf8, false)]));
        let key_batch = RecordBatch::try_new(key_schema, vec![Arc::new(values)])
            .map_err(|e| Error::arrow(name, e))?;
        let key_df = ctx.read_batch(key_batch).map_err(df_err)?;
        let join = if keys.keep {
            JoinType::LeftSemi
        } else {
            JoinType::LeftAnti
        };
        df = df
            .join_on(
                key_df,
                join,
                [cast(col(keys.column), DataType::Utf8).eq(col(KEY))],
            )
            .map_err(df_err)?;
    }
    let mut df = df.select_columns(columns).map_err(df_err)?;
    if !order.is_empty() {
        df = df
            .sort(order.iter().map(|c| col(*c).sort(true, false)).collect())
            .map_err(df_err)?;
    }
    Ok(Some(df))
}

/// DataFusion may read strings and binaries as view types; the pipeline works on the plain
/// types of the table schemas.
fn without_views(batch: &RecordBatch, name: &str) -> Result<RecordBatch> {
    let plain = |t: &DataType| match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    };
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match plain(field.data_type()) {
            Some(t) => {
                let cast = deltalake::arrow::compute::cast(column, &t)
                    .map_err(|e| Error::arrow(name, e))?;
                fields.push(Field::new(field.name(), t, field.is_nullable()));
                columns.push(cast);
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| Error::arrow(name, e))
}
