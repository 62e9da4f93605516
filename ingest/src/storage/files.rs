//! A table's data files one at a time: listed by partition and read on their own, so that a
//! writer can rewrite just the files holding the rows it changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::SchemaRef;
pub(crate) use deltalake::kernel::LogicalFileView as DataFile;
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;

use crate::error::{Error, Result};

/// The value of the integer partition column `column` of `file`, if it has one.
pub(crate) fn partition_value(file: &DataFile, column: &str) -> Option<i32> {
    file.partition_values_map()
        .get(column)
        .cloned()
        .flatten()
        .and_then(|v| v.parse().ok())
}

/// The data files of `table` whose integer partition column `column` holds one of `values`.
pub(crate) async fn files_in(
    table: &DeltaTable,
    name: &str,
    column: &str,
    values: &BTreeSet<i32>,
) -> Result<Vec<DataFile>> {
    let Ok(state) = table.snapshot() else {
        return Ok(vec![]);
    };
    state
        .snapshot()
        .file_views(table.log_store().as_ref(), None)
        .try_filter(|f| {
            let wanted = partition_value(f, column).is_some_and(|v| values.contains(&v));
            futures::future::ready(wanted)
        })
        .try_collect()
        .await
        .map_err(|e| Error::delta(name, e))
}

/// The bytes of one data `file` of `table`.
pub(crate) async fn fetch_file(table: &DeltaTable, name: &str, file: &DataFile) -> Result<Bytes> {
    let fail = |e: deltalake::ObjectStoreError| Error::delta(name, e.into());
    table
        .object_store()
        .get(&file.object_store_path())
        .await
        .map_err(fail)?
        .bytes()
        .await
        .map_err(fail)
}

/// The rows of a data `file` fetched as `bytes`, in the columns and types of `like` (see
/// [`conform`]): only the file's columns `like` names are decoded.
pub(crate) fn decode_file(
    bytes: Bytes,
    name: &str,
    file: &DataFile,
    like: &SchemaRef,
) -> Result<RecordBatch> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(arrow_error(name))?;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| like.field_with_name(f.name()).is_ok())
        .map(|(i, _)| i)
        .collect();
    let read_schema = SchemaRef::new(
        builder
            .schema()
            .project(&roots)
            .map_err(arrow_error(name))?,
    );
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let batches = builder
        .with_projection(mask)
        .build()
        .map_err(arrow_error(name))?
        .collect::<std::result::Result<Vec<RecordBatch>, _>>()
        .map_err(arrow_error(name))?;
    let read = concat_batches(&read_schema, &batches).map_err(arrow_error(name))?;
    conform(&read, like, name, &file.partition_values_map())
}

/// `batch` in the columns and types of `like`: a column it lacks (a file written before the
/// schema grew, or a partition column, taken from `partitions`) as its partition value or NULL.
pub(crate) fn conform(
    batch: &RecordBatch,
    like: &SchemaRef,
    name: &str,
    partitions: &HashMap<String, Option<String>>,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns = like
        .fields()
        .iter()
        .map(|f| {
            let column: ArrayRef = match (batch.column_by_name(f.name()), partitions.get(f.name()))
            {
                (Some(c), _) => c.clone(),
                (None, Some(Some(value))) => {
                    Arc::new(StringArray::from(vec![value.as_str(); rows]))
                }
                (None, _) => return Ok(new_null_array(f.data_type(), rows)),
            };
            cast(&column, f.data_type())
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(arrow_error(name))?;
    RecordBatch::try_new(like.clone(), columns).map_err(arrow_error(name))
}

fn arrow_error<E: std::error::Error + Send + Sync + 'static>(
    name: &str,
) -> impl Fn(E) -> Error + '_ {
    move |e| Error::arrow(name, e)
}
