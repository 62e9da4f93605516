//! A principal's session: the queries it runs are planned against its secured catalog,
//! answered from the cache or admitted to execute, counted and audited.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::CatalogProvider;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};
use futures::TryStreamExt;
use patientflow_semantic::{CATALOG, MetricQuery, compile};

use super::{AuditEntry, Engine, QueryResult, Read, plain_frame, sql_key};
use crate::error::{Error, Result};
use crate::rbac::Access;
use crate::validate;

/// One principal's view of the engine: every query it runs is planned against the secured
/// catalog, cached under its access, and audited.
pub struct Session<'a> {
    pub(super) engine: &'a Engine,
    pub(super) ctx: SessionContext,
    pub(super) access: Arc<Access>,
    pub(super) door: &'static str,
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
                Error::ResourcesExhausted(_) => {
                    engine.stats.exhausted.fetch_add(1, Ordering::Relaxed)
                }
                Error::Forbidden(_) => engine.stats.denied.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            if matches!(
                e,
                Error::Timeout(_) | Error::ResourcesExhausted(_) | Error::Overloaded { .. }
            ) {
                // Who and why, never the statement: its text may name patients.
                tracing::warn!(
                    principal = %self.access.principal().oid,
                    door = self.door,
                    reason = e.outcome(),
                    "query refused or cancelled: {e}"
                );
            }
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

    /// Runs the query in a slot of the admission controller (waiting for one if need be),
    /// with its share of the memory pool, under the time limit; caches what it answers.
    async fn execute(
        &self,
        key: String,
        plan: impl Future<Output = Result<DataFrame>>,
    ) -> Result<(Vec<Read>, QueryResult)> {
        let engine = self.engine;
        // The slot goes with the execution: a query cancelled by its time limit keeps it until
        // its task has actually stopped on the query runtime, so cancelled work still running
        // is counted and never crowds out the next queries unseen.
        let mut permit = Some(engine.permit(&self.access.principal().oid).await?);
        let limit = engine.config.query_timeout;
        let max_bytes = engine.config.max_result_bytes;
        let run = async {
            let df = plan.await?;
            let reads = engine.reads(df.logical_plan());
            let runtime = engine.query_runtime()?;
            let permit = permit.take();
            let mut running = engine.executor.spawn(async move {
                let _permit = permit;
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let task = df.task_ctx().with_runtime(runtime);
                let physical = df.create_physical_plan().await?;
                let mut stream = execute_stream(physical, Arc::new(task))?;
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
                Ok(QueryResult {
                    schema,
                    batches: batches.into(),
                    cached: false,
                })
            })?;
            Ok::<_, Error>((reads, running.outcome().await?))
        };
        // Past the limit (or when the request goes away) the running query is dropped, which
        // aborts it on the query runtime.
        let (reads, result) = tokio::time::timeout(limit, run)
            .await
            .map_err(|_| Error::Timeout(limit))??;
        if let Some(reads) = &reads {
            engine.cache.put(key, reads.clone(), result.clone());
        }
        Ok((reads.unwrap_or_default(), result))
    }
}
