//! Query results as JSON, CSV or Arrow IPC, chosen by the `Accept` header.

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::ArrayWriter;
use patientflow_sql::QueryResult;
use serde::Serialize;

use super::error::ApiError;

/// The media type of an Arrow IPC stream.
pub(crate) const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// A result in JSON: columns with their types, then one object per row.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct JsonResult {
    /// Output columns in order.
    columns: Vec<JsonColumn>,
    /// One object per row, keyed by column name.
    #[schema(value_type = Vec<Object>)]
    rows: serde_json::Value,
    /// Number of rows.
    row_count: usize,
    /// Whether the result came from the cache (the tables have not changed since).
    cached: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct JsonColumn {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
}

/// `result` as JSON.
pub(crate) fn json(result: &QueryResult) -> Result<JsonResult, ApiError> {
    let mut writer = ArrayWriter::new(Vec::new());
    let batches: Vec<&RecordBatch> = result.batches.iter().collect();
    writer.write_batches(&batches).map_err(ApiError::internal)?;
    writer.finish().map_err(ApiError::internal)?;
    let bytes = writer.into_inner();
    let rows = if bytes.is_empty() {
        serde_json::Value::Array(Vec::new())
    } else {
        serde_json::from_slice(&bytes).map_err(ApiError::internal)?
    };
    Ok(JsonResult {
        columns: result
            .schema
            .fields()
            .iter()
            .map(|f| JsonColumn {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
            })
            .collect(),
        row_count: result.rows(),
        rows,
        cached: result.cached,
    })
}

/// `result` in the format `headers` accept: Arrow IPC stream, CSV, or JSON (the default).
pub(crate) fn negotiate(headers: &HeaderMap, result: &QueryResult) -> Result<Response, ApiError> {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if accept.contains(ARROW_STREAM) {
        let mut buf = Vec::new();
        let mut writer =
            StreamWriter::try_new(&mut buf, &result.schema).map_err(ApiError::internal)?;
        for batch in result.batches.iter() {
            writer.write(batch).map_err(ApiError::internal)?;
        }
        writer.finish().map_err(ApiError::internal)?;
        return Ok(with_type(buf, ARROW_STREAM));
    }
    if accept.contains("text/csv") {
        let mut buf = Vec::new();
        let mut writer = WriterBuilder::new().with_header(true).build(&mut buf);
        for batch in result.batches.iter() {
            writer.write(batch).map_err(ApiError::internal)?;
        }
        drop(writer);
        return Ok(with_type(buf, "text/csv; charset=utf-8"));
    }
    Ok(axum::Json(json(result)?).into_response())
}

fn with_type(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
