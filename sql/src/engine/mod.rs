//! The query engine: one DataFusion context over the `patientflow` catalog, running read-only
//! SQL and semantic queries under a time limit, admission control and a share of the memory
//! pool each, with a result cache keyed by the query and the Delta versions it read.

mod admission;
mod cache;
mod executor;
mod memory;
mod session;

pub use admission::{Admission, AdmissionConfig, AdmissionStats, Permit, Refusal};
pub use session::Session;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProviderList};
use datafusion::common::Column;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, cast};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use patientflow_ingest::TableRoot;
use patientflow_semantic::{CATALOG, DeltaCatalog, Model, PatientflowCatalog};

use self::cache::Cache;
use self::executor::Executor;
use self::memory::Share;
use crate::error::{Error, Result};
use crate::holistic::HolisticAggregates;
use crate::rbac::{Access, MaskKey, Principal, SecuredCatalog};

/// Limits and sizes of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A query running longer is cancelled.
    pub query_timeout: Duration,
    /// Memory pool of all running queries (joins, sorts, aggregates), bytes; each executing
    /// query may use its share, the pool divided by `admission.max_executing`.
    pub memory_limit: usize,
    /// How many queries execute at once, how many wait, and for how long.
    pub admission: AdmissionConfig,
    /// Largest result a query may return, bytes of Arrow arrays.
    pub max_result_bytes: usize,
    /// Results kept in the cache.
    pub cache_entries: usize,
    /// The key of `hash` masks (HMAC-SHA-256); a random one per process unless configured.
    pub mask_key: MaskKey,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let memory_limit = 2 << 30;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            query_timeout: Duration::from_secs(30),
            memory_limit,
            admission: AdmissionConfig::for_machine(cores, memory_limit),
            max_result_bytes: 512 << 20,
            cache_entries: 256,
            mask_key: MaskKey::random(),
        }
    }
}

/// A query's result: its batches, shared with the cache.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The result schema.
    pub schema: SchemaRef,
    /// The result rows.
    pub batches: Arc<[RecordBatch]>,
    /// Whether it came from the cache.
    pub cached: bool,
}

impl QueryResult {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Bytes of Arrow arrays held.
    pub fn bytes(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Queries answered (from the cache or not).
    pub queries: AtomicU64,
    /// Queries that failed.
    pub failures: AtomicU64,
    /// Queries answered from the cache.
    pub cache_hits: AtomicU64,
    /// Queries cancelled by the time limit.
    pub timeouts: AtomicU64,
    /// Queries cancelled for memory (their share of the pool) or result size.
    pub exhausted: AtomicU64,
    /// Queries refused because the principal is not granted what they read.
    pub denied: AtomicU64,
    /// Microseconds spent answering queries.
    pub micros: AtomicU64,
}

/// The query engine.
pub struct Engine {
    ctx: SessionContext,
    delta: Arc<DeltaCatalog>,
    model: Arc<Model>,
    config: EngineConfig,
    cache: Cache,
    stats: EngineStats,
    admission: Arc<Admission>,
    /// Where queries execute, apart from the runtime that answers requests.
    executor: Executor,
    /// Secured contexts by access fingerprint.
    contexts: Mutex<HashMap<String, SessionContext>>,
    audit: Option<Arc<dyn AuditSink>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("session", &self.ctx.session_id())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A Delta table a result was computed from, at the version it was read.
type Read = (String, String, u64);

impl Engine {
    /// An engine over the tables under `root`, with the KPIs of `model`.
    pub fn new(root: TableRoot, model: Model, config: EngineConfig) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(config.memory_limit, 1.0)
            .build_arc()?;
        // DataFusion's own options can be tuned with DATAFUSION_* environment variables
        // (e.g. DATAFUSION_EXECUTION_TARGET_PARTITIONS).
        let session = SessionConfig::from_env()?
            .with_default_catalog_and_schema(CATALOG, "gold")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(HolisticAggregates))
            .build();
        let ctx = SessionContext::new_with_state(state);
        // SQL gets the same UTC fast path for `date_trunc` as semantic queries.
        ctx.register_udf(patientflow_semantic::date_trunc().as_ref().clone());
        let model = Arc::new(model);
        let delta = DeltaCatalog::new(root, Arc::new(ctx.state()));
        ctx.register_catalog(
            CATALOG,
            Arc::new(PatientflowCatalog::new(Arc::clone(&model), delta.clone())),
        );
        Ok(Self {
            ctx,
            delta,
            model,
            cache: Cache::new(config.cache_entries),
            admission: Admission::new(config.admission.clone()),
            executor: Executor::new()?,
            config,
            stats: EngineStats::default(),
            contexts: Mutex::new(HashMap::new()),
            audit: None,
        })
    }

    /// Sends every query's audit entry to `sink`.
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// The semantic model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The unsecured DataFusion context (catalog `patientflow`, default schema `gold`), for
    /// tools and tests; requests go through [`Engine::session`].
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The Delta version of `schema.table` now (`None` while it has not been written).
    pub async fn table_version(&self, schema: &str, table: &str) -> Result<Option<u64>> {
        Ok(self.delta.latest_version(schema, table).await?)
    }

    /// The admission controller (its queue and counters, for `/metrics`).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// A slot of the admission controller for `principal`'s work that reads tables outside a
    /// query (an endpoint that builds a report from Delta tables itself): it waits its turn
    /// as queries do, and is refused the same way.
    pub async fn permit(&self, principal: &str) -> Result<Permit> {
        self.admission
            .admit(principal)
            .await
            .map_err(|reason| Error::overloaded(reason, &self.admission))
    }

    /// Bytes of the memory pool.
    pub fn memory_limit(&self) -> usize {
        self.config.memory_limit
    }

    /// Bytes of the memory pool the executing queries hold.
    pub fn memory_reserved(&self) -> usize {
        self.ctx.runtime_env().memory_pool.reserved()
    }

    /// The runtime of one executing query: the engine's, with the query's own share of the
    /// memory pool.
    fn query_runtime(&self) -> Result<Arc<RuntimeEnv>> {
        let runtime = self.ctx.runtime_env();
        let share = self.config.memory_limit / self.config.admission.max_executing.max(1);
        let pool = Share::new(Arc::clone(&runtime.memory_pool), share);
        Ok(RuntimeEnvBuilder::from_runtime_env(&runtime)
            .with_memory_pool(Arc::new(pool))
            .build_arc()?)
    }

    /// The engine's counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// A session for `access`: its queries are planned against secured views of the tables
    /// its grants reach. Fails when the access grants nothing.
    /// `door` names the entry point for the audit (`rest`, `flight`).
    pub fn session(&self, access: Arc<Access>, door: &'static str) -> Result<Session<'_>> {
        if access.grants().is_empty() {
            return Err(Error::Forbidden(
                "your token carries no role or group that the server's policies grant; ask for an app role of patientflow".into(),
            ));
        }
        let ctx = self.secured_context(&access)?;
        Ok(Session {
            engine: self,
            ctx,
            access,
            door,
        })
    }

    /// The context whose catalog is secured for `access`, shared by principals with equal
    /// access.
    fn secured_context(&self, access: &Arc<Access>) -> Result<SessionContext> {
        let mut contexts = self
            .contexts
            .lock()
            .map_err(|_| Error::Internal("session contexts poisoned".into()))?;
        if let Some(ctx) = contexts.get(access.fingerprint()) {
            return Ok(ctx.clone());
        }
        let mask = Arc::new(self.config.mask_key.udf());
        let rows = Arc::new(SecuredCatalog::rows(
            Arc::clone(&self.delta) as Arc<dyn CatalogProvider>,
            Arc::clone(access),
            Arc::clone(&mask),
        ));
        let catalog = Arc::new(PatientflowCatalog::new(Arc::clone(&self.model), rows));
        let state = SessionStateBuilder::new_from_existing(self.ctx.state())
            .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(
            CATALOG,
            Arc::new(SecuredCatalog::views_only(
                catalog,
                Arc::clone(access),
                mask,
            )),
        );
        if contexts.len() >= MAX_CONTEXTS {
            contexts.clear();
        }
        contexts.insert(access.fingerprint().to_string(), ctx.clone());
        Ok(ctx)
    }

    /// The Delta tables a plan reads with their versions, or `None` when it reads anything
    /// else too (information_schema, literal tables): such results are not cached.
    fn reads(&self, plan: &LogicalPlan) -> Option<Vec<Read>> {
        let mut reads = Vec::new();
        let mut cacheable = true;
        collect_reads(
            plan,
            &mut |schema, table| match self.delta.version(schema, table) {
                Some(v) => reads.push((schema.to_string(), table.to_string(), v)),
                None => cacheable = false,
            },
        );
        (cacheable && !reads.is_empty()).then_some(reads)
    }

    /// A cached result whose tables are all still at the versions it read.
    async fn cached(&self, key: &str) -> Option<(Vec<Read>, QueryResult)> {
        let (reads, result) = self.cache.get(key)?;
        for (schema, table, version) in &reads {
            match self.delta.latest_version(schema, table).await {
                Ok(Some(v)) if v == *version => {}
                _ => return None,
            }
        }
        Some((
            reads,
            QueryResult {
                cached: true,
                ..result
            },
        ))
    }
}

/// Secured contexts kept (one per distinct access); the map is cleared when full.
const MAX_CONTEXTS: usize = 512;

/// One query as the audit records it.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who asked.
    pub principal: Principal,
    /// The entry point: `rest`, `flight`.
    pub door: &'static str,
    /// The statement: `sql`, `metric` or `prepared`, a NUL, then the SQL text or the
    /// semantic query as JSON.
    pub statement: String,
    /// Delta tables read, `schema.table`.
    pub tables: Vec<String>,
    /// Rows returned.
    pub rows: u64,
    /// Time to answer.
    pub duration: Duration,
    /// Whether the result came from the cache.
    pub cached: bool,
    /// `ok`, `denied`, `invalid`, `timeout`, `resources_exhausted` or `failed`.
    pub outcome: &'static str,
}

/// Where audit entries go (the server writes them to `ops/audit` and the log).
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one query; must not block.
    fn record(&self, entry: AuditEntry);
}

/// The key that identifies a SQL statement to the cache and the audit.
pub fn sql_key(sql: &str) -> String {
    format!("sql\u{0}{sql}")
}

/// The plain type for a string or binary view type.
fn plain(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    }
}

/// `schema` with view types replaced by plain ones, as query results have them (for
/// metadata calls that describe tables).
pub fn plain_schema(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match plain(f.data_type()) {
                Some(t) => f.as_ref().clone().with_data_type(t),
                None => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    )
}

/// `df` with string and binary view columns cast to plain Utf8 and Binary: the Delta scan
/// reads views, but the JDBC driver and older BI clients know only the plain types.
fn plain_frame(df: DataFrame) -> Result<DataFrame> {
    if !df
        .schema()
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return Ok(df);
    }
    let columns: Vec<Expr> = df
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            match plain(field.data_type()) {
                Some(t) => cast(column, t).alias_qualified(qualifier.cloned(), field.name()),
                None => column,
            }
        })
        .collect();
    Ok(df.select(columns)?)
}

/// Calls `found(schema, table)` for every table `plan` scans, looking through views and
/// subqueries; tables of other catalogs are reported with schema `""`.
fn collect_reads(plan: &LogicalPlan, found: &mut dyn FnMut(&str, &str)) {
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let view = source_as_provider(&scan.source)
                .ok()
                .and_then(|p| p.get_logical_plan().map(|p| p.into_owned()));
            match view {
                Some(inner) => collect_reads(&inner, found),
                None => {
                    let name = scan.table_name.clone().resolve(CATALOG, "gold");
                    if name.catalog.as_ref() == CATALOG {
                        found(&name.schema, &name.table);
                    } else {
                        found("", &name.table);
                    }
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
}
