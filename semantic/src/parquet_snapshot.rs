//! A Delta table at one version, scanned by DataFusion directly as that version's Parquet files.
//!
//! delta-rs's provider replays the table's log on every scan (it evaluates file skipping on the
//! log's JSON statistics) and wraps the Parquet scan in a stream that tags every row with its
//! file, so that it can apply deletion vectors and column mapping. A table that uses neither —
//! reader protocol 1: Parquet files plus partition values, which is how patientflow writes
//! every table — needs none of that. Its files are listed once, when the version is loaded,
//! with statistics from their Parquet footers. Those are exact where the log's are not (Delta
//! cuts timestamps to milliseconds there), so DataFusion answers `max(hour_start)` from them
//! without reading a row, and prunes files, row groups and pages as for any Parquet table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{
    DFSchema, DataFusionError, Result as DfResult, ScalarValue, Statistics, project_schema,
};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::helpers::{expr_applicable_for_cols, filter_partitioned_file};
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{ObjectMeta, ObjectStore};
use futures::{StreamExt, TryStreamExt, stream};

use crate::mapped_files::MappedFiles;

/// The Parquet files of one Delta table version, as a DataFusion table.
#[derive(Debug)]
pub(crate) struct ParquetSnapshot {
    /// File columns, then partition columns.
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    store: ObjectStoreUrl,
    files: Vec<PartitionedFile>,
    /// The files read through memory maps, for a table on the local file system.
    mapped: Option<Arc<MappedFiles>>,
}

impl ParquetSnapshot {
    /// `table` at its loaded version with `schema` (delta-rs's, so that column types stay the
    /// same whichever provider reads it), or `None` when the table needs delta-rs to read it:
    /// a reader protocol above 1, or partition columns that are not the last columns. Footers
    /// are read through `session`'s metadata cache; a file `previous` already listed is taken
    /// from it (Delta never rewrites a data file in place).
    pub(crate) async fn try_new(
        table: &DeltaTable,
        schema: SchemaRef,
        session: &SessionState,
        previous: Option<&ParquetSnapshot>,
    ) -> DfResult<Option<Self>> {
        let external = |e: deltalake::DeltaTableError| DataFusionError::External(Box::new(e));
        let state = table.snapshot().map_err(external)?;
        if state.protocol().min_reader_version() != 1 {
            return Ok(None);
        }
        let partition_columns = state.metadata().partition_columns();
        let Some(split) = schema.fields().len().checked_sub(partition_columns.len()) else {
            return Ok(None);
        };
        let (file_fields, partition_fields) = schema.fields().split_at(split);
        if partition_fields
            .iter()
            .zip(partition_columns)
            .any(|(field, name)| field.name() != name)
        {
            return Ok(None);
        }
        let file_schema = Arc::new(Schema::new(file_fields.to_vec()));
        let partition_fields = partition_fields.to_vec();

        let log_store = table.log_store();
        let store = log_store.object_store_url();
        let object_store = log_store.object_store(None);
        session
            .runtime_env()
            .register_object_store(store.as_ref(), Arc::clone(&object_store));

        let known: HashMap<&str, &PartitionedFile> = previous
            .filter(|p| p.schema == schema)
            .map(|p| {
                p.files
                    .iter()
                    .map(|f| (f.object_meta.location.as_ref(), f))
                    .collect()
            })
            .unwrap_or_default();
        let views = state.log_data();
        let entries = views
            .iter()
            .map(|view| {
                let meta = ObjectMeta {
                    location: view.object_store_path(),
                    last_modified: view.modification_datetime().map_err(external)?,
                    size: u64::try_from(view.size()).unwrap_or_default(),
                    e_tag: None,
                    version: None,
                };
                if let Some(file) = known.get(meta.location.as_ref()) {
                    return Ok(Entry::Listed(Box::new((*file).clone())));
                }
                let raw = view.partition_values_map();
                let values = partition_fields
                    .iter()
                    .map(|field| match raw.get(field.name()).cloned().flatten() {
                        Some(text) => ScalarValue::try_from_string(text, field.data_type()),
                        None => ScalarValue::try_from(field.data_type()),
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                Ok(Entry::New(meta, values))
            })
            .collect::<DfResult<Vec<_>>>()?;
        // New files' footers are read concurrently, as DataFusion does when it lists a table
        // (on ADLS each is a request).
        let format = ParquetFormat::default().with_options(session.table_options().parquet.clone());
        let files: Vec<PartitionedFile> = stream::iter(entries)
            .map(|entry| async {
                let (meta, values) = match entry {
                    Entry::Listed(file) => return Ok(*file),
                    Entry::New(meta, values) => (meta, values),
                };
                let statistics = format
                    .infer_stats(session, &object_store, Arc::clone(&file_schema), &meta)
                    .await?;
                Ok::<_, DataFusionError>(
                    PartitionedFile::new_from_meta(meta)
                        .with_partition_values(values)
                        .with_statistics(Arc::new(statistics)),
                )
            })
            .buffered(usize::from(
                session.config_options().execution.meta_fetch_concurrency,
            ))
            .try_collect()
            .await?;
        let root = log_store.root_url();
        let mapped = (root.scheme() == "file").then(|| {
            let listed: HashSet<&Path> = files.iter().map(|f| &f.object_meta.location).collect();
            Arc::new(MappedFiles::new(
                object_store,
                root.clone(),
                previous.and_then(|p| p.mapped.as_deref()),
                |path| listed.contains(path),
            ))
        });
        Ok(Some(Self {
            schema,
            file_schema,
            partition_fields,
            store,
            files,
            mapped,
        }))
    }
}

/// A data file of the version being loaded.
enum Entry {
    /// Listed by the version before, statistics and all.
    Listed(Box<PartitionedFile>),
    /// Not seen before: its path and partition values; statistics still to read.
    New(ObjectMeta, Vec<ScalarValue>),
}

#[async_trait]
impl TableProvider for ParquetSnapshot {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters on partition columns alone select the files here, exactly, as DataFusion's
    /// listing tables do; the physical optimizer pushes the others into the Parquet scan,
    /// where they prune files, row groups and pages by statistics.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partitions = DFSchema::try_from(Schema::new(self.partition_fields.clone()))?;
        let filters: Vec<Expr> = filters
            .iter()
            .filter(|f| self.on_partitions(f))
            .cloned()
            .collect();
        let mut files = Vec::with_capacity(self.files.len());
        for file in &self.files {
            files.extend(filter_partitioned_file(
                file.clone(),
                &filters,
                &partitions,
            )?);
        }
        if files.is_empty() {
            let schema = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // The statistics of the files read: DataFusion answers an aggregate from them.
        let statistics = Statistics::try_merge_iter(
            files.iter().filter_map(|f| f.statistics.as_deref()),
            &self.schema,
        )?;
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let table_schema = TableSchema::builder(Arc::clone(&self.file_schema))
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        // As `ParquetFormat::create_physical_plan`, but reading through the maps when there are
        // any; footers come from the session's metadata cache either way.
        let runtime = state.runtime_env();
        let files_store: Arc<dyn ObjectStore> = match &self.mapped {
            Some(mapped) => Arc::clone(mapped) as _,
            None => runtime.object_store(&self.store)?,
        };
        let options = &state.table_options().parquet;
        let reader = CachedParquetFileReaderFactory::new(
            files_store,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let mut source = ParquetSource::new(table_schema)
            .with_table_parquet_options(options.clone())
            .with_parquet_file_reader_factory(Arc::new(reader));
        if let Some(hint) = options.global.metadata_size_hint {
            source = source.with_metadata_size_hint(hint);
        }
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.on_partitions(f) {
                true => TableProviderFilterPushDown::Exact,
                false => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }
}

impl ParquetSnapshot {
    /// Whether `filter` reads partition columns only, so it can select files by their values.
    fn on_partitions(&self, filter: &Expr) -> bool {
        let names: Vec<&str> = self
            .partition_fields
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        !names.is_empty() && expr_applicable_for_cols(&names, filter)
    }
}
