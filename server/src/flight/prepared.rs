//! Prepared statements: create (schema of the result and of the parameters), bind
//! parameters (DoPut), describe (GetFlightInfo) and run (DoGet), close. JDBC prepares every
//! query, DBeaver and Tableau included; `?` parameters are numbered `$1`, `$2`, ….

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandPreparedStatementQuery, DoPutPreparedStatementResult, ProstMessageExt,
};
use arrow_flight::{FlightDescriptor, IpcMessage, SchemaAsIpc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::{ParamValues, ScalarValue};
use futures::TryStreamExt;
use tonic::{Response, Status};

use datafusion::prelude::DataFrame;
use patientflow_sql::Session;

use super::{DoGetStream, FlightSql, to_status};

/// An open prepared statement.
#[derive(Debug, Clone)]
struct Prepared {
    sql: String,
    /// Bound parameter values, `$1` first.
    params: Vec<ScalarValue>,
    /// The result's schema, as planned when it was prepared.
    schema: SchemaRef,
}

/// Open prepared statements by handle.
#[derive(Debug, Default)]
pub(super) struct Statements(Mutex<HashMap<Vec<u8>, Prepared>>);

impl Statements {
    fn get(&self, handle: &[u8]) -> Result<Prepared, Status> {
        self.0
            .lock()
            .map_err(|_| Status::internal("prepared statements poisoned"))?
            .get(handle)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(
                    "no such prepared statement; it was closed or the server restarted",
                )
            })
    }

    fn put(&self, handle: Vec<u8>, prepared: Prepared) -> Result<(), Status> {
        self.0
            .lock()
            .map_err(|_| Status::internal("prepared statements poisoned"))?
            .insert(handle, prepared);
        Ok(())
    }

    pub(super) fn close(&self, handle: &[u8]) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(handle);
        }
    }
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?;
    Ok(bytes)
}

/// Plans the statement for its schemas. One without parameters is started too (see
/// [`super::handoff`]): clients run what they prepare (the ADBC driver prepares every query),
/// so its result is on its way before they ask.
pub(super) async fn create(
    service: &FlightSql,
    session: &Session<'_>,
    query: ActionCreatePreparedStatementRequest,
) -> Result<ActionCreatePreparedStatementResult, Status> {
    let df = session.plan_sql(&query.query).await.map_err(to_status)?;
    let types = df
        .logical_plan()
        .get_parameter_types()
        .map_err(|e| to_status(e.into()))?;
    let mut params: Vec<(usize, DataType)> = types
        .into_iter()
        .filter_map(|(id, t)| {
            Some((
                id.strip_prefix('$')?.parse().ok()?,
                t.unwrap_or(DataType::Utf8),
            ))
        })
        .collect();
    params.sort_by_key(|(n, _)| *n);
    let parameter_schema = Schema::new(
        params
            .iter()
            .map(|(n, t)| Field::new(format!("${n}"), t.clone(), true))
            .collect::<Vec<_>>(),
    );
    let prepared = Prepared {
        sql: query.query,
        params: Vec::new(),
        schema: Arc::clone(df.schema().inner()),
    };
    let answer = ActionCreatePreparedStatementResult {
        prepared_statement_handle: uuid::Uuid::new_v4().as_bytes().to_vec().into(),
        dataset_schema: schema_bytes(&prepared.schema)?,
        parameter_schema: schema_bytes(&parameter_schema)?,
    };
    let key = prepared.key();
    service
        .prepared
        .put(answer.prepared_statement_handle.to_vec(), prepared)?;
    if params.is_empty() {
        service.start_early(session, key, df).await;
    }
    Ok(answer)
}

/// Binds the first row of the uploaded batch as the parameters `$1`, `$2`, ….
pub(super) async fn bind(
    statements: &Statements,
    query: CommandPreparedStatementQuery,
    data: PeekableFlightDataStream,
) -> Result<DoPutPreparedStatementResult, Status> {
    let handle = query.prepared_statement_handle.to_vec();
    let mut prepared = statements.get(&handle)?;
    let batches: Vec<_> = FlightRecordBatchStream::new_from_flight_data(data.map_err(Into::into))
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("cannot read the parameters: {e}")))?;
    prepared.params = match batches.iter().find(|b| b.num_rows() > 0) {
        Some(batch) => batch
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect::<Result<_, _>>()
            .map_err(|e| Status::invalid_argument(format!("unusable parameter: {e}")))?,
        None => Vec::new(),
    };
    statements.put(handle.clone(), prepared)?;
    Ok(DoPutPreparedStatementResult {
        prepared_statement_handle: Some(handle.into()),
    })
}

impl Prepared {
    /// The key that identifies the statement with its parameters to the cache, the audit and
    /// the handoff.
    fn key(&self) -> String {
        format!("prepared\u{0}{}\u{0}{:?}", self.sql, self.params)
    }
}

/// Plans the statement for the caller, with its bound parameters.
async fn plan(session: &Session<'_>, prepared: &Prepared) -> Result<DataFrame, Status> {
    let df = session.plan_sql(&prepared.sql).await.map_err(to_status)?;
    if prepared.params.is_empty() {
        return Ok(df);
    }
    df.with_param_values(ParamValues::List(
        prepared.params.iter().cloned().map(Into::into).collect(),
    ))
    .map_err(|e| to_status(e.into()))
}

/// Describes the statement's result and starts it (see [`super::handoff`]).
pub(super) async fn flight_info(
    service: &FlightSql,
    session: &Session<'_>,
    query: CommandPreparedStatementQuery,
    descriptor: FlightDescriptor,
) -> Result<Response<arrow_flight::FlightInfo>, Status> {
    let prepared = service.prepared.get(&query.prepared_statement_handle)?;
    let ticket = query.as_any();
    let key = prepared.key();
    // Started when it was prepared, and not run since.
    if service.handoff.holds(session.access().fingerprint(), &key) {
        return super::flight_info(&prepared.schema, ticket, descriptor);
    }
    service
        .start(session, key, plan(session, &prepared), ticket, descriptor)
        .await
}

pub(super) async fn do_get(
    service: &FlightSql,
    session: &Session<'_>,
    query: CommandPreparedStatementQuery,
) -> Result<Response<DoGetStream>, Status> {
    let prepared = service.prepared.get(&query.prepared_statement_handle)?;
    let run = async {
        let df = plan(session, &prepared).await?;
        session.run(prepared.key(), df).await.map_err(to_status)
    };
    service.take_or_run(session, &prepared.key(), run).await
}
