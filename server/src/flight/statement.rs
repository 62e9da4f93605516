//! `CommandStatementQuery` → `TicketStatementQuery`: GetFlightInfo plans the query (its
//! answer carries the schema) and starts it; its result waits for the DoGet (see
//! [`super::handoff`]). The ticket carries the SQL text, so any server instance can answer it.

use arrow_flight::FlightDescriptor;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, TicketStatementQuery};
use tonic::{Response, Status};

use patientflow_sql::{Session, sql_key};

use super::{DoGetStream, FlightSql, to_status};

pub(super) async fn flight_info(
    service: &FlightSql,
    session: &Session<'_>,
    query: CommandStatementQuery,
    descriptor: FlightDescriptor,
) -> Result<Response<arrow_flight::FlightInfo>, Status> {
    let key = sql_key(&query.query);
    let plan = async { session.plan_sql(&query.query).await.map_err(to_status) };
    let ticket = TicketStatementQuery {
        statement_handle: query.query.clone().into_bytes().into(),
    };
    service
        .start(session, key, plan, ticket.as_any(), descriptor)
        .await
}

pub(super) async fn do_get(
    service: &FlightSql,
    session: &Session<'_>,
    ticket: TicketStatementQuery,
) -> Result<Response<DoGetStream>, Status> {
    let sql = std::str::from_utf8(&ticket.statement_handle)
        .map_err(|_| Status::invalid_argument("the statement ticket is not UTF-8 SQL"))?;
    let run = async { session.sql(sql).await.map_err(to_status) };
    service.take_or_run(session, &sql_key(sql), run).await
}
