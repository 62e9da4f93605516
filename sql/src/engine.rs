//! The query engine: one DataFusion context over the `patientflow` catalog, running read-only
//! SQL and semantic queries under a time limit and a memory pool, with a result cache keyed
//! by the query and the Delta versions it read.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProviderList};
use datafusion::common::Column;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, cast};
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::TryStreamExt;
use patientflow_ingest::TableRoot;
use patientflow_semantic::{
    CATALOG, DeltaCatalog, MetricQuery, Model, PatientflowCatalog, compile,
};

use crate::error::{Error, Result};
use crate::holistic::HolisticAggregates;
use crate::rbac::{Access, MaskKey, Principal, SecuredCatalog};
use crate::validate;

/// Limits and sizes of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A query running longer is cancelled.
    pub query_timeout: Duration,
    /// Memory pool shared by all running queries (joins, sorts, aggregates), bytes.
    pub memory_limit: usize,
    /// Largest result a query may return, bytes of Arrow arrays.
    pub max_result_bytes: usize,
    /// Results kept in the cache.
    pub cache_entries: usize,
    /// The key of `hash` masks (HMAC-SHA-256); a random one per process unless configured.
    pub mask_key: MaskKey,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(30),
            memory_limit: 2 << 30,
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

/// One principal's view of the engine: every query it runs is planned against the secured
/// catalog, cached under its access, and audited.
pub struct Session<'a> {
    engine: &'a Engine,
    ctx: SessionContext,
    access: Arc<Access>,
    door: &'static str,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("principal", &self.access.principal().oid)
            .finish_non_exhaustive()
    }
}

impl Session<'_> {
    /// The access the session's queries are planned under.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// The secured `patientflow` catalog (what metadata calls list).
    pub fn catalog(&self) -> Result<Arc<dyn CatalogProvider>> {
        self.ctx
            .catalog(CATALOG)
            .ok_or_else(|| Error::Internal("the patientflow catalog is not registered".into()))
    }

    /// Plans one read-only SQL statement without running it.
    /// `?` parameters are numbered `$1`, `$2`, …; bind them with
    /// [`DataFrame::with_param_values`].
    /// A statement that does not plan (refused, invalid) is counted and audited here; one
    /// that plans is when it runs.
    pub async fn plan_sql(&self, sql: &str) -> Result<DataFrame> {
        let started = Instant::now();
        let planned = self.plan(sql).await;
        if let Err(e) = &planned {
            self.record(sql_key(sql), started, Err(e));
        }
        planned
    }

    async fn plan(&self, sql: &str) -> Result<DataFrame> {
        let statement = validate::parse_read_only(sql)?;
        let state = self.ctx.state();
        let plan = state.statement_to_plan(statement).await?;
        // Defence in depth: DataFusion's own check of what the plan may do.
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        plain_frame(DataFrame::new(state, plan))
    }

    /// Runs one read-only SQL statement; [`sql_key`] is its key for the cache and the audit.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        self.answer(sql_key(sql), async { self.plan(sql).await })
            .await
    }

    /// Fails with [`Error::Forbidden`] unless the caller may read `schema.table` (for
    /// endpoints that read a table other than through a query).
    pub async fn require(&self, schema: &str, table: &str) -> Result<()> {
        if let Some(schema) = self.catalog()?.schema(schema) {
            schema.table(table).await?;
        }
        Ok(())
    }

    /// Runs a semantic query.
    pub async fn metric(&self, query: &MetricQuery) -> Result<QueryResult> {
        let text = serde_json::to_string(query).map_err(|e| Error::Internal(e.to_string()))?;
        self.answer(format!("metric\u{0}{text}"), async {
            plain_frame(compile(&self.engine.model, &self.ctx, query).await?)
        })
        .await
    }

    /// Runs a planned DataFrame (for callers that plan themselves, such as prepared
    /// statements); `key` identifies the query for the cache and the audit.
    pub async fn run(&self, key: String, df: DataFrame) -> Result<QueryResult> {
        self.answer(key, async { Ok(df) }).await
    }

    fn cache_key(&self, key: &str) -> String {
        format!("{}\u{0}{key}", self.access.fingerprint())
    }

    /// The cached result of query `key`, when its tables are all still at the versions it
    /// read (counted and audited as an answer). Callers that plan before they run, such as
    /// Flight SQL's GetFlightInfo, ask this first: a hit costs no planning.
    pub async fn cached(&self, key: &str) -> Option<QueryResult> {
        let started = Instant::now();
        let hit = self.engine.cached(&self.cache_key(key)).await?;
        self.engine.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        self.record(key.to_string(), started, Ok(&hit));
        Some(hit.1)
    }

    async fn answer(
        &self,
        key: String,
        plan: impl Future<Output = Result<DataFrame>>,
    ) -> Result<QueryResult> {
        if let Some(hit) = self.cached(&key).await {
            return Ok(hit);
        }
        let started = Instant::now();
        let answer = self.execute(self.cache_key(&key), plan).await;
        self.record(key, started, answer.as_ref());
        answer.map(|(_, result)| result)
    }

    /// Counts and audits the answer to query `key` (or its failure), begun at `started`.
    fn record(
        &self,
        key: String,
        started: Instant,
        answer: Result<&(Vec<Read>, QueryResult), &Error>,
    ) {
        let engine = self.engine;
        engine.stats.queries.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = answer {
            engine.stats.failures.fetch_add(1, Ordering::Relaxed);
            match e {
                Error::Timeout(_) => engine.stats.timeouts.fetch_add(1, Ordering::Relaxed),
                Error::Forbidden(_) => engine.stats.denied.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
        let duration = started.elapsed();
        engine
            .stats
            .micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        match answer {
            Ok((reads, result)) => self.audit(
                key,
                reads.iter().map(|(s, t, _)| format!("{s}.{t}")).collect(),
                result.rows() as u64,
                duration,
                result.cached,
                "ok",
            ),
            Err(e) => self.audit(key, Vec::new(), 0, duration, false, e.outcome()),
        }
    }

    fn audit(
        &self,
        statement: String,
        tables: Vec<String>,
        rows: u64,
        duration: Duration,
        cached: bool,
        outcome: &'static str,
    ) {
        if let Some(audit) = &self.engine.audit {
            audit.record(AuditEntry {
                principal: self.access.principal().clone(),
                door: self.door,
                statement,
                tables,
                rows,
                duration,
                cached,
                outcome,
            });
        }
    }

    async fn execute(
        &self,
        key: String,
        plan: impl Future<Output = Result<DataFrame>>,
    ) -> Result<(Vec<Read>, QueryResult)> {
        let engine = self.engine;
        let limit = engine.config.query_timeout;
        let max_bytes = engine.config.max_result_bytes;
        let run = async {
            let df = plan.await?;
            let reads = engine.reads(df.logical_plan());
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let mut stream = df.execute_stream().await?;
            let mut batches = Vec::new();
            let mut bytes = 0;
            while let Some(batch) = stream.try_next().await? {
                bytes += batch.get_array_memory_size();
                if bytes > max_bytes {
                    return Err(Error::ResourcesExhausted(format!(
                        "the result is larger than {} MiB; aggregate it or add a LIMIT",
                        max_bytes >> 20
                    )));
                }
                batches.push(batch);
            }
            Ok((
                reads,
                QueryResult {
                    schema,
                    batches: batches.into(),
                    cached: false,
                },
            ))
        };
        let (reads, result) = tokio::time::timeout(limit, run)
            .await
            .map_err(|_| Error::Timeout(limit))??;
        if let Some(reads) = &reads {
            engine.cache.put(key, reads.clone(), result.clone());
        }
        Ok((reads.unwrap_or_default(), result))
    }
}

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

/// A cached result with the tables (and versions) it was computed from.
type Entry = (Vec<Read>, QueryResult);

/// Results by query key, oldest evicted first.
#[derive(Debug)]
struct Cache {
    capacity: usize,
    inner: Mutex<(HashMap<String, Entry>, VecDeque<String>)>,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    fn get(&self, key: &str) -> Option<Entry> {
        self.inner.lock().ok()?.0.get(key).cloned()
    }

    fn put(&self, key: String, reads: Vec<Read>, result: QueryResult) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let (entries, order) = &mut *inner;
        if entries.insert(key.clone(), (reads, result)).is_none() {
            order.push_back(key);
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                entries.remove(&old);
            }
        }
    }
}
