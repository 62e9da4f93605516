//! `CommandStatementQuery` → `TicketStatementQuery`: plan on GetFlightInfo (for the schema),
//! run on DoGet. The ticket carries the SQL text, so any server instance can answer it.

use arrow_flight::FlightDescriptor;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, TicketStatementQuery};
use tonic::{Response, Status};

use patientflow_sql::Session;

use super::{DoGetStream, flight_info as info, stream_result, to_status};

pub(super) async fn flight_info(
    session: &Session<'_>,
    query: CommandStatementQuery,
    descriptor: FlightDescriptor,
) -> Result<Response<arrow_flight::FlightInfo>, Status> {
    let df = session.plan_sql(&query.query).await.map_err(to_status)?;
    let schema = df.schema().as_arrow().clone();
    let ticket = TicketStatementQuery {
        statement_handle: query.query.into_bytes().into(),
    };
    info(&schema, ticket.as_any(), descriptor)
}

pub(super) async fn do_get(
    session: &Session<'_>,
    ticket: TicketStatementQuery,
) -> Result<Response<DoGetStream>, Status> {
    let sql = std::str::from_utf8(&ticket.statement_handle)
        .map_err(|_| Status::invalid_argument("the statement ticket is not UTF-8 SQL"))?;
    let result = session.sql(sql).await.map_err(to_status)?;
    Ok(stream_result(result))
}
