//! A table's data files one at a time: listed by partition and read on their own, so that a
//! writer can rewrite just the files holding the rows it changes.

use std::collections::BTreeSet;

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

/// The rows of one data `file` of `table` in the columns and types of `like`: the partition
/// columns from the log, a column the file lacks (written before the schema grew) as NULL.
/// Only the file's columns `like` names are read.
pub(crate) async fn read_file(
    table: &DeltaTable,
    name: &str,
    file: &DataFile,
    like: &SchemaRef,
) -> Result<RecordBatch> {
    let err = |e| Error::arrow(name, e);
    let bytes = table
        .object_store()
        .get(&file.object_store_path())
        .await
        .map_err(|e| Error::delta(name, e.into()))?
        .bytes()
        .await
        .map_err(|e| Error::delta(name, e.into()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(err)?;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| like.field_with_name(f.name()).is_ok())
        .map(|(i, _)| i)
        .collect();
    let read_schema = SchemaRef::new(builder.schema().project(&roots).map_err(err_arrow(name))?);
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let batches = builder
        .with_projection(mask)
        .build()
        .map_err(err)?
        .collect::<std::result::Result<Vec<RecordBatch>, _>>()
        .map_err(err_arrow(name))?;
    let read = concat_batches(&read_schema, &batches).map_err(err_arrow(name))?;
    let rows = read.num_rows();
    let partitions = file.partition_values_map();
    let columns = like
        .fields()
        .iter()
        .map(|f| {
            let column: ArrayRef = match (read.column_by_name(f.name()), partitions.get(f.name())) {
                (Some(c), _) => c.clone(),
                (None, Some(Some(value))) => {
                    std::sync::Arc::new(StringArray::from(vec![value.as_str(); rows]))
                }
                (None, _) => return Ok(new_null_array(f.data_type(), rows)),
            };
            cast(&column, f.data_type())
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow(name, e))?;
    RecordBatch::try_new(like.clone(), columns).map_err(|e| Error::arrow(name, e))
}

fn err_arrow(name: &str) -> impl Fn(deltalake::arrow::error::ArrowError) -> Error + '_ {
    move |e| Error::arrow(name, e)
}
