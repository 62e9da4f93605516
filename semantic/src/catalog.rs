//! The `patientflow` DataFusion catalog: the Delta tables under a table root as schemas `gold`,
//! `silver` and `ops`, and the model's views as schema `kpi`.
//!
//! Tables are looked up per query and brought up to their latest Delta version on the way, so
//! new commits are visible without a restart; the versions read are remembered for result
//! caching. A table that has not changed costs one existence check of its next commit file:
//! its snapshot and DataFusion provider are kept from the query before.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;
use deltalake::logstore::commit_uri_from_version;
use deltalake::logstore::object_store::{self, ObjectStoreExt};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use patientflow_ingest::TableRoot;
use patientflow_ingest::tables;

use crate::compile::compile;
use crate::model::Model;
use crate::parquet_snapshot::ParquetSnapshot;

/// Name of the catalog.
pub const CATALOG: &str = "patientflow";
/// Schema of the model's views.
pub const KPI_SCHEMA: &str = "kpi";

/// Every Delta table the query service exposes, as `schema/table` under the root. Bronze
/// stays internal: its raw payloads are for reprocessing, not for analysts.
pub const EXPOSED_TABLES: [&str; 15] = [
    tables::DIM_DEPARTMENT,
    tables::DIM_PATIENT,
    tables::DIM_DATE,
    tables::FACT_ADMISSION,
    tables::FACT_STAY_SEGMENT,
    tables::FACT_CENSUS_HOURLY,
    tables::FACT_ED_VISIT,
    tables::SILVER_EVENTS,
    tables::QUARANTINE,
    tables::SILVER_DEPARTMENTS,
    tables::SILVER_EHR,
    tables::QUALITY_RUNS,
    tables::AUDIT,
    tables::PIPELINE_RUNS,
    tables::ALERTS,
];

/// One Delta table of the catalog, opened on first use.
#[derive(Debug)]
struct Slot {
    path: &'static str,
    table: Mutex<Option<Loaded>>,
}

/// A table at the version last read, with what queries scan it through.
#[derive(Debug, Clone)]
struct Loaded {
    table: DeltaTable,
    scan: Scan,
}

/// How a loaded table is scanned.
#[derive(Debug, Clone)]
enum Scan {
    /// Its Parquet files, when it is plain Parquet.
    Files(Arc<ParquetSnapshot>),
    /// delta-rs's provider, for tables with reader features.
    Delta(Arc<dyn TableProvider>),
}

impl Loaded {
    fn version(&self) -> Option<u64> {
        self.table.version()
    }

    fn provider(&self) -> Arc<dyn TableProvider> {
        match &self.scan {
            Scan::Files(files) => Arc::clone(files) as Arc<dyn TableProvider>,
            Scan::Delta(provider) => Arc::clone(provider),
        }
    }
}

/// The Delta tables under a root, by schema and table name.
#[derive(Debug)]
pub struct DeltaCatalog {
    schemas: BTreeMap<String, Arc<DeltaSchema>>,
}

impl DeltaCatalog {
    /// The catalog of the tables under `root` (tables that do not exist yet appear once they
    /// are written). Scans take their Parquet options from `session` (delta-rs alone would
    /// push every filter into the Parquet decoder, whatever the session says).
    pub fn new(root: TableRoot, session: Arc<SessionState>) -> Arc<Self> {
        let mut by_schema: BTreeMap<String, BTreeMap<String, Arc<Slot>>> = BTreeMap::new();
        for path in EXPOSED_TABLES {
            let (schema, table) = path.split_once('/').unwrap_or(("gold", path));
            by_schema.entry(schema.to_string()).or_default().insert(
                table.to_string(),
                Arc::new(Slot {
                    path,
                    table: Mutex::new(None),
                }),
            );
        }
        let schemas = by_schema
            .into_iter()
            .map(|(name, tables)| {
                let schema = DeltaSchema {
                    root: root.clone(),
                    session: Arc::clone(&session),
                    tables,
                };
                (name, Arc::new(schema))
            })
            .collect();
        Arc::new(Self { schemas })
    }

    /// The Delta version last read of `schema.table`, if it is a Delta table and was read.
    pub fn version(&self, schema: &str, table: &str) -> Option<u64> {
        let slot = self.schemas.get(schema)?.tables.get(table)?;
        let guard = slot.table.lock().ok()?;
        guard.as_ref()?.version()
    }

    /// Brings `schema.table` up to its latest version and returns that version (`None` when
    /// the table is not exposed or not written yet).
    pub async fn latest_version(&self, schema: &str, table: &str) -> crate::Result<Option<u64>> {
        let Some((schema, slot)) = self
            .schemas
            .get(schema)
            .and_then(|s| Some((s, s.tables.get(table)?)))
        else {
            return Ok(None);
        };
        let latest = schema
            .latest(slot)
            .await
            .map_err(|source| crate::Error::Table {
                table: slot.path.replace('/', "."),
                source: Box::new(source),
            })?;
        Ok(latest.and_then(|t| t.version()))
    }
}

impl CatalogProvider for DeltaCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas
            .get(name)
            .map(|s| Arc::clone(s) as Arc<dyn SchemaProvider>)
    }
}

/// One schema of Delta tables.
#[derive(Debug)]
pub(crate) struct DeltaSchema {
    root: TableRoot,
    /// Where scans take their Parquet options from.
    session: Arc<SessionState>,
    tables: BTreeMap<String, Arc<Slot>>,
}

impl DeltaSchema {
    /// The table at its latest version, or `None` when it has not been written yet.
    async fn latest(&self, slot: &Slot) -> Result<Option<Loaded>, DeltaTableError> {
        let cached = slot.table.lock().map_err(poisoned)?.clone();
        let (table, previous) = match cached {
            Some(loaded) if !has_next_commit(&loaded.table).await? => return Ok(Some(loaded)),
            Some(Loaded { mut table, scan }) => {
                patientflow_ingest::update_table(&mut table).await?;
                let files = match scan {
                    Scan::Files(files) => Some(files),
                    Scan::Delta(_) => None,
                };
                (table, files)
            }
            None => match self.open(slot).await? {
                Some(table) => (table, None),
                None => return Ok(None),
            },
        };
        let delta = table
            .table_provider()
            .with_session(Arc::clone(&self.session))
            .await?;
        let scan = match ParquetSnapshot::try_new(
            &table,
            delta.schema(),
            &self.session,
            previous.as_deref(),
        )
        .await
        .map_err(|e| DeltaTableError::Generic(e.to_string()))?
        {
            Some(files) => Scan::Files(Arc::new(files)),
            None => Scan::Delta(delta),
        };
        let loaded = Loaded { table, scan };
        *slot.table.lock().map_err(poisoned)? = Some(loaded.clone());
        Ok(Some(loaded))
    }

    /// The table of `slot` at its latest version, or `None` when it has not been written yet.
    async fn open(&self, slot: &Slot) -> Result<Option<DeltaTable>, DeltaTableError> {
        let url = self
            .root
            .table_url(slot.path)
            .map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let mut table = DeltaTableBuilder::from_url(url)?
            .with_storage_options(self.root.storage_options().clone())
            .build()?;
        // A local root that is gone is a fault, not a table not written yet.
        if let Some(root) = self.root.local_path().filter(|p| !p.exists()) {
            return Err(DeltaTableError::Generic(format!(
                "the table root {} does not exist",
                root.display()
            )));
        }
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_) | DeltaTableError::InvalidTableLocation(_)) => {
                Ok(None)
            }
            // delta-rs does not re-export the kernel's error type; its message is the one way
            // to tell "no table here" from a broken table.
            Err(DeltaTableError::KernelError(e))
                if e.to_string().starts_with("Invalid table location") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether a commit newer than the one `table` was read at exists: Delta commits are numbered
/// without gaps, so one existence check of the next commit file answers it (a full log
/// refresh lists the log and reads its checkpoint hint on every query).
async fn has_next_commit(table: &DeltaTable) -> Result<bool, DeltaTableError> {
    let Some(version) = table.version() else {
        return Ok(true);
    };
    let next = commit_uri_from_version(Some(version + 1));
    match table.log_store().object_store(None).head(&next).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> DeltaTableError {
    DeltaTableError::Generic("a table slot was poisoned by a panic".into())
}

#[async_trait]
impl SchemaProvider for DeltaSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(slot) = self.tables.get(name) else {
            return Ok(None);
        };
        // The table's name travels with the error, so the client is told which one failed.
        let external = |source: DeltaTableError| {
            DataFusionError::External(Box::new(crate::Error::Table {
                table: slot.path.replace('/', "."),
                source: Box::new(source),
            }))
        };
        Ok(self
            .latest(slot)
            .await
            .map_err(external)?
            .map(|loaded| loaded.provider()))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}

/// The model's views, compiled against a base catalog each time they are used, so they read
/// the tables' latest versions (and, when the base is secured, only what it lets through).
pub(crate) struct KpiSchema {
    model: Arc<Model>,
    /// A context whose `patientflow` catalog is the base; views are compiled in it.
    ctx: SessionContext,
}

impl std::fmt::Debug for KpiSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KpiSchema")
            .field("views", &self.model.views.len())
            .finish()
    }
}

impl KpiSchema {
    /// Views of `model` over the tables of `base`.
    pub(crate) fn new(model: Arc<Model>, base: Arc<dyn CatalogProvider>) -> Self {
        let ctx = SessionContext::new();
        ctx.register_catalog(CATALOG, base);
        Self { model, ctx }
    }
}

#[async_trait]
impl SchemaProvider for KpiSchema {
    fn table_names(&self) -> Vec<String> {
        self.model.views.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(query) = self.model.views.get(name) else {
            return Ok(None);
        };
        // A view over a table not written yet (a new fact before the next refresh) is not
        // there either, rather than an error for whoever lists the catalog.
        // A refusal is left to the compiled view, which reports it.
        let catalog = self.ctx.catalog(CATALOG);
        for table in self.model.tables_read(query) {
            let Some((schema, table)) = table.split_once('.') else {
                continue;
            };
            let schema = catalog.as_ref().and_then(|c| c.schema(schema));
            if let Some(schema) = schema
                && matches!(schema.table(table).await, Ok(None))
            {
                return Ok(None);
            }
        }
        let plan = compile(&self.model, &self.ctx, query)
            .await?
            .into_unoptimized_plan();
        let definition = serde_json::to_string(query).ok();
        Ok(Some(Arc::new(ViewTable::new(plan, definition))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.model.views.contains_key(name)
    }
}

/// The `patientflow` catalog: a base catalog's schemas plus `kpi`.
#[derive(Debug)]
pub struct PatientflowCatalog {
    base: Arc<dyn CatalogProvider>,
    kpi: Arc<KpiSchema>,
}

impl PatientflowCatalog {
    /// `base`'s schemas and the views of `model` over them.
    pub fn new(model: Arc<Model>, base: Arc<dyn CatalogProvider>) -> Self {
        let kpi = Arc::new(KpiSchema::new(model, Arc::clone(&base)));
        Self { base, kpi }
    }
}

impl CatalogProvider for PatientflowCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.base.schema_names();
        names.push(KPI_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == KPI_SCHEMA {
            Some(Arc::clone(&self.kpi) as Arc<dyn SchemaProvider>)
        } else {
            self.base.schema(name)
        }
    }
}
