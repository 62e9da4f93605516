//! KPI behaviour as sqllogictest files (`tests/slt/*.slt`) over the `small_network` fixture.
//!
//! Besides SQL, a record may hold `METRIC {json}`: a semantic query (`POST /api/v1/query`'s
//! body). Run with `PATIENTFLOW_SLT_COMPLETE=1` to rewrite the expected results from the
//! engine (then check the diff by hand against the fixture's README).

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use patientflow_semantic::MetricQuery;
use patientflow_sql::rbac::Access;
use patientflow_sql::{Engine, QueryResult};
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::fixture;

/// The engine, queried as one principal.
struct Db(Arc<Engine>, Arc<Access>);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DbError(String);

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let session = self
            .0
            .session(Arc::clone(&self.1), "test")
            .map_err(|e| DbError(e.to_string()))?;
        let result = match sql.trim().strip_prefix("METRIC") {
            Some(json) => {
                let query: MetricQuery =
                    serde_json::from_str(json).map_err(|e| DbError(e.to_string()))?;
                session.metric(&query).await
            }
            None => session.sql(sql).await,
        }
        .map_err(|e| DbError(e.to_string()))?;
        Ok(rows(&result))
    }

    async fn shutdown(&mut self) {}
}

fn rows(result: &QueryResult) -> DBOutput<DefaultColumnType> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in result.batches.iter() {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| {
                        let text = f.value(row).to_string();
                        if c.is_null(row) || !text.is_empty() {
                            text
                        } else {
                            "(empty)".into()
                        }
                    })
                    .collect(),
            );
        }
    }
    DBOutput::Rows {
        types: vec![DefaultColumnType::Any; result.schema.fields().len()],
        rows,
    }
}

async fn run(file: &str) {
    run_as(file, fixture::admin()).await;
}

async fn run_as(file: &str, access: Arc<Access>) {
    let fixture = fixture::load("small_network").await;
    let engine = fixture.engine.clone();
    let mut runner = sqllogictest::Runner::new(move || {
        let engine = engine.clone();
        let access = Arc::clone(&access);
        async move { Ok::<_, DbError>(Db(engine, access)) }
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slt")
        .join(file);
    if std::env::var_os("PATIENTFLOW_SLT_COMPLETE").is_some() {
        runner
            .update_test_file(
                &path,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .unwrap();
    } else if let Err(e) = runner.run_file_async(&path).await {
        panic!("{}", e.display(true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_kpis() {
    run("occupancy.slt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_kpis() {
    run("flow.slt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_front_door() {
    run("front_door.slt").await;
}

/// A clinician of hospital 1's ICU tries every way to other departments' rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinician_sees_only_their_department() {
    run_as(
        "rbac_clinician.slt",
        fixture::access_of("PatientFlow.Clinician.1.ICU"),
    )
    .await;
}

/// A hospital manager of hospital 2 and a network admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_and_admin_scopes() {
    run_as(
        "rbac_manager.slt",
        fixture::access_of("PatientFlow.HospitalManager.2"),
    )
    .await;
    run_as(
        "rbac_admin.slt",
        fixture::access_of("PatientFlow.NetworkAdmin"),
    )
    .await;
}
