//! Loads a fixture folder of gold CSVs (`tests/fixtures/<name>/<table>.csv`) into real Delta
//! tables under a temporary root, typed by the gold table specs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::csv::ReaderBuilder;
use patientflow_ingest::TableRoot;
use patientflow_ingest::tables::GOLD_SPECS;
use patientflow_semantic::Model;
use patientflow_sql::rbac::{Access, MaskKey, Policies, Principal};
use patientflow_sql::{Engine, EngineConfig, Error, QueryResult};
use tempfile::TempDir;

/// A table root holding one fixture, and an engine over it.
pub(crate) struct Fixture {
    _dir: TempDir,
    pub(crate) root: TableRoot,
    pub(crate) engine: Arc<Engine>,
}

/// The answer to `sql` for an unrestricted caller.
pub(crate) async fn answer(fixture: &Fixture, sql: &str) -> QueryResult {
    ask(fixture, sql).await.unwrap()
}

/// The answer to `sql` for an unrestricted caller, or why there is none.
pub(crate) async fn ask(fixture: &Fixture, sql: &str) -> Result<QueryResult, Error> {
    fixture
        .engine
        .session(admin(), "test")
        .unwrap()
        .sql(sql)
        .await
}

/// The one integer `sql` answers, such as a `count(*)`.
pub(crate) async fn count(fixture: &Fixture, sql: &str) -> i64 {
    let result = answer(fixture, sql).await;
    let column = result.batches[0].column(0);
    column
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

/// Everything, unmasked.
pub(crate) fn admin() -> Arc<Access> {
    Arc::new(Access::unrestricted(Principal::default()))
}

/// The access the shipped example policies (`rbac-policies/`) give a token with app role
/// `role`.
pub(crate) fn access_of(role: &str) -> Arc<Access> {
    let policies =
        Policies::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rbac-policies")).unwrap();
    Arc::new(policies.access(Principal {
        oid: "tester".into(),
        roles: vec![role.into()],
        ..Principal::default()
    }))
}

/// Writes every CSV of fixture `name` as the gold table of the same name.
pub(crate) async fn load(name: &str) -> Fixture {
    load_with(
        name,
        EngineConfig {
            // The key the expected masks in tests/slt were computed with.
            mask_key: MaskKey::new(b"patientflow-slt-mask-key"),
            ..EngineConfig::default()
        },
    )
    .await
}

pub(crate) async fn load_with(name: &str, config: EngineConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
    for spec in GOLD_SPECS {
        if csv(name, spec.name).exists() {
            append(&root, name, spec.name).await;
        }
    }
    let engine = Engine::new(root.clone(), Model::built_in().unwrap(), config).unwrap();
    Fixture {
        _dir: dir,
        root,
        engine: Arc::new(engine),
    }
}

/// The CSV of fixture `name` for gold `table` (`gold/...`).
fn csv(name: &str, table: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join(format!("{}.csv", table.trim_start_matches("gold/")))
}

/// Appends the rows of fixture `name`'s CSV for gold `table` (`gold/...`) to that table
/// under `root`, as one new Delta commit.
pub(crate) async fn append(root: &TableRoot, name: &str, table: &str) {
    let spec = GOLD_SPECS.iter().find(|s| s.name == table).unwrap();
    let reader = ReaderBuilder::new(spec.schema())
        .with_header(true)
        .build(std::fs::File::open(csv(name, table)).unwrap())
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    root.open(spec.name)
        .await
        .unwrap()
        .write(batches)
        .with_partition_columns(spec.partition_by.iter().map(|c| c.to_string()))
        .await
        .unwrap();
}
