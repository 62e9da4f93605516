//! Arrow Flight SQL (arrow-flight + tonic): statements, prepared statements with parameters,
//! and the metadata calls BI tools make (catalogs, schemas, tables, table types, primary keys,
//! type info, SQL info). One module per group of commands; this file routes.

mod handoff;
mod metadata;
mod prepared;
mod sql_info;
mod statement;

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, Ticket,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::prelude::DataFrame;
use futures::Stream;
use patientflow_sql::{Engine, QueryResult, Session};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Auth;

/// The Flight SQL service over the query engine.
pub(crate) struct FlightSql {
    engine: Arc<Engine>,
    auth: Arc<Auth>,
    prepared: prepared::Statements,
    handoff: Arc<handoff::Handoff>,
    sql_info: SqlInfoData,
    xdbc_types: XdbcTypeInfoData,
}

impl std::fmt::Debug for FlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSql").finish_non_exhaustive()
    }
}

impl FlightSql {
    pub(crate) fn new(
        engine: Arc<Engine>,
        auth: Arc<Auth>,
        timeout_secs: i32,
    ) -> Result<Self, arrow_flight::error::FlightError> {
        Ok(Self {
            engine,
            auth,
            prepared: prepared::Statements::default(),
            handoff: Arc::default(),
            sql_info: sql_info::sql_info(timeout_secs)?,
            xdbc_types: sql_info::xdbc_types()?,
        })
    }
}

impl FlightSql {
    /// The caller's session, from the `authorization: Bearer` metadata every call carries.
    async fn session(&self, metadata: &MetadataMap) -> Result<Session<'_>, Status> {
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
        let access = self
            .auth
            .access(header, "flight")
            .await
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        self.engine.session(access, "flight").map_err(to_status)
    }
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The one translation of engine errors to gRPC status codes. Internal details are logged,
/// not sent.
fn to_status(e: patientflow_sql::Error) -> Status {
    use patientflow_sql::Error as E;
    match &e {
        E::Syntax(_) | E::InvalidQuery(_) => Status::invalid_argument(e.to_string()),
        E::NotReadOnly { .. } | E::Forbidden(_) => Status::permission_denied(e.to_string()),
        E::Timeout(_) => Status::deadline_exceeded(e.to_string()),
        E::ResourcesExhausted(_) => Status::resource_exhausted(e.to_string()),
        E::Overloaded { retry_after, .. } => {
            // `retry-after` as HTTP has it, and gRPC's own pushback for clients with a retry
            // policy.
            let mut status = Status::resource_exhausted(e.to_string());
            let secs = retry_after.as_secs().max(1);
            let metadata = status.metadata_mut();
            metadata.insert("retry-after", secs.into());
            metadata.insert("grpc-retry-pushback-ms", (secs * 1000).into());
            status
        }
        E::Unavailable(_) => Status::unavailable(e.to_string()),
        E::Internal(_) => {
            tracing::error!(error = %e, "flight request failed");
            Status::internal("internal error; the server log has the details")
        }
    }
}

/// A FlightInfo whose one endpoint's ticket is `ticket`, describing `schema`.
fn flight_info(
    schema: &Schema,
    ticket: Any,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

impl FlightSql {
    /// Answers GetFlightInfo for query `key` and readies its result for the DoGet that
    /// follows (see [`handoff`]): a cached result is described and kept as it is; otherwise the
    /// query is planned here, which gives its schema, and runs in the background.
    async fn start(
        &self,
        session: &Session<'_>,
        key: String,
        plan: impl Future<Output = Result<DataFrame, Status>>,
        ticket: Any,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        if let Some((schema, rows, bytes)) = self.hand_over_cached(session, &key).await {
            let info = flight_info(&schema, ticket, descriptor)?
                .into_inner()
                .with_total_records(rows as i64)
                .with_total_bytes(bytes as i64);
            return Ok(Response::new(info));
        }
        let df = plan.await?;
        let info = flight_info(df.schema().as_arrow(), ticket, descriptor)?;
        self.run_for_doget(session, key, df);
        Ok(info)
    }

    /// Readies the result of the planned query `key` for a DoGet to come, as [`Self::start`]
    /// does, before anyone asked for it: a cached result is kept, otherwise `df` starts.
    async fn start_early(&self, session: &Session<'_>, key: String, df: DataFrame) {
        if self.hand_over_cached(session, &key).await.is_none() {
            self.run_for_doget(session, key, df);
        }
    }

    /// Hands a cached result of query `key` to the DoGet to come: its schema, rows and bytes,
    /// or `None` when nothing is cached.
    async fn hand_over_cached(
        &self,
        session: &Session<'_>,
        key: &str,
    ) -> Option<(SchemaRef, usize, usize)> {
        let result = session.cached(key).await?;
        let (schema, rows, bytes) = (result.schema.clone(), result.rows(), result.bytes());
        let access = session.access().fingerprint();
        self.handoff.put(access, key.to_string(), result, bytes);
        Some((schema, rows, bytes))
    }

    /// Runs `df` in the background; its result waits in the handoff under `key`.
    fn run_for_doget(&self, session: &Session<'_>, key: String, df: DataFrame) {
        let access = session.access();
        let running = self.handoff.start(access.fingerprint(), key.clone());
        let (engine, access) = (Arc::clone(&self.engine), Arc::clone(access));
        tokio::spawn(async move {
            let result = match engine.session(access, "flight") {
                Ok(session) => session.run(key, df).await,
                Err(e) => Err(e),
            };
            running.finish(result);
        });
    }

    /// Answers DoGet for query `key`: the result its GetFlightInfo readied, or else `run`'s.
    async fn take_or_run(
        &self,
        session: &Session<'_>,
        key: &str,
        run: impl Future<Output = Result<QueryResult, Status>>,
    ) -> Result<Response<DoGetStream>, Status> {
        let kept = match self.handoff.take(session.access().fingerprint(), key) {
            Some(answer) => answer.result().await,
            None => None,
        };
        let result = match kept {
            Some(result) => result.map_err(to_status)?,
            None => run.await?,
        };
        Ok(stream_result(result))
    }
}

/// Streams `batches` (with `schema`, also when there are none).
fn stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    Response::new(Box::pin(futures::StreamExt::map(stream, |r| {
        r.map_err(Status::from)
    })))
}

/// Streams a query result.
fn stream_result(result: QueryResult) -> Response<DoGetStream> {
    stream(result.schema.clone(), result.batches.to_vec())
}

/// Streams one metadata batch.
fn stream_batch(
    batch: Result<RecordBatch, arrow_flight::error::FlightError>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(format!("cannot build the metadata: {e}")))?;
    Ok(stream(batch.schema(), vec![batch]))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Accepts the basic credentials a client offers (Arrow Flight handshake); tokens are
    /// checked per call.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(
            response,
        )]))))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        statement::flight_info(self, &session, query, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        statement::do_get(self, &session, ticket).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        prepared::create(self, &session, query).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.session(request.metadata()).await?;
        prepared::bind(&self.prepared, query, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        prepared::flight_info(self, &session, query, request.into_inner()).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        prepared::do_get(self, &session, query).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.session(request.metadata()).await?;
        self.prepared.close(&query.prepared_statement_handle);
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        stream_batch(metadata::catalogs(query))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        stream_batch(metadata::schemas(&session, query))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        stream_batch(metadata::tables(&session, query).await)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        stream_batch(metadata::table_types(query))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &metadata::primary_keys_schema(),
            query.as_any(),
            request.into_inner(),
        )
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        stream_batch(metadata::primary_keys(&query))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        stream_batch(query.into_builder(&self.sql_info).build())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc_types).schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        stream_batch(query.into_builder(&self.xdbc_types).build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// `FlightService` for tonic, answered by the Flight SQL dispatch above.
pub(crate) fn service(
    flight: FlightSql,
) -> arrow_flight::flight_service_server::FlightServiceServer<FlightSql> {
    arrow_flight::flight_service_server::FlightServiceServer::new(flight)
}
