//! Metadata commands: catalogs, schemas, tables (with their Arrow schemas), table types,
//! primary keys. They read the caller's secured `patientflow` catalog, so they list exactly
//! what its queries may read.

use std::sync::Arc;

use arrow_flight::error::FlightError;
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTableTypes,
    CommandGetTables,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::CatalogProvider;
use datafusion::datasource::TableType;
use patientflow_semantic::CATALOG;
use patientflow_sql::{Session, plain_schema};

type Result<T> = std::result::Result<T, FlightError>;

fn catalog(session: &Session<'_>) -> Result<Arc<dyn CatalogProvider>> {
    session
        .catalog()
        .map_err(|e| FlightError::ExternalError(Box::new(e)))
}

pub(super) fn catalogs(query: CommandGetCatalogs) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    builder.append(CATALOG);
    builder.build()
}

pub(super) fn schemas(session: &Session<'_>, query: CommandGetDbSchemas) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for schema in catalog(session)?.schema_names() {
        builder.append(CATALOG, schema);
    }
    builder.build()
}

pub(super) async fn tables(session: &Session<'_>, query: CommandGetTables) -> Result<RecordBatch> {
    let catalog = catalog(session)?;
    let mut builder = query.into_builder();
    for schema_name in catalog.schema_names() {
        let Some(schema) = catalog.schema(&schema_name) else {
            continue;
        };
        for name in schema.table_names() {
            let table = schema
                .table(&name)
                .await
                .map_err(|e| FlightError::ExternalError(Box::new(e)))?;
            // Tables not written yet are not listed.
            let Some(table) = table else { continue };
            let kind = match table.table_type() {
                TableType::View => "VIEW",
                _ => "TABLE",
            };
            builder.append(
                CATALOG,
                &schema_name,
                &name,
                kind,
                &plain_schema(&table.schema()),
            )?;
        }
    }
    builder.build()
}

pub(super) fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    builder.append("TABLE");
    builder.append("VIEW");
    builder.build()
}

/// The result schema of `GetPrimaryKeys` (Flight SQL spec).
pub(super) fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

/// Delta tables declare no primary keys, so the answer has the spec's columns and no rows.
pub(super) fn primary_keys(_query: &CommandGetPrimaryKeys) -> Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(primary_keys_schema());
    let empty = |t: &DataType| datafusion::arrow::array::new_empty_array(t);
    let columns = schema
        .fields()
        .iter()
        .map(|f| empty(f.data_type()))
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}
