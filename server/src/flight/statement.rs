//! `CommandStatementQuery` → `TicketStatementQuery`: the query runs on GetFlightInfo (whose
//! answer carries the schema and the row count) and its result waits for the DoGet in the
//! [`Handoff`]. The ticket carries the SQL text, so any server instance can answer it.

use arrow_flight::FlightDescriptor;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, TicketStatementQuery};
use tonic::{Response, Status};

use patientflow_sql::{Session, sql_key};

use super::handoff::Handoff;
use super::{DoGetStream, hand_off, stream_result, to_status};

pub(super) async fn flight_info(
    handoff: &Handoff,
    session: &Session<'_>,
    query: CommandStatementQuery,
    descriptor: FlightDescriptor,
) -> Result<Response<arrow_flight::FlightInfo>, Status> {
    let result = session.sql(&query.query).await.map_err(to_status)?;
    let key = sql_key(&query.query);
    let ticket = TicketStatementQuery {
        statement_handle: query.query.into_bytes().into(),
    };
    hand_off(handoff, session, key, result, ticket.as_any(), descriptor)
}

pub(super) async fn do_get(
    handoff: &Handoff,
    session: &Session<'_>,
    ticket: TicketStatementQuery,
) -> Result<Response<DoGetStream>, Status> {
    let sql = std::str::from_utf8(&ticket.statement_handle)
        .map_err(|_| Status::invalid_argument("the statement ticket is not UTF-8 SQL"))?;
    let result = match handoff.take(session.access().fingerprint(), &sql_key(sql)) {
        Some(result) => result,
        None => session.sql(sql).await.map_err(to_status)?,
    };
    Ok(stream_result(result))
}
