//! `GET /api/v1/catalog`: tables with their columns, metrics and dimensions.

use axum::Json;
use axum::extract::State;
use patientflow_sql::plain_schema;
use serde::Serialize;

use crate::http::AppState;
use crate::http::caller::Caller;
use crate::http::error::ApiError;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Catalog {
    /// Occupancy rate from which a department counts as a bottleneck.
    bottleneck_threshold: f64,
    /// Tables and views of the `patientflow` catalog that exist and the caller is granted.
    tables: Vec<Table>,
    /// Metrics of the semantic model.
    metrics: Vec<MetricInfo>,
    /// Dimensions of the semantic model.
    dimensions: Vec<Named>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Table {
    schema: String,
    name: String,
    columns: Vec<Column>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct MetricInfo {
    name: String,
    description: String,
    /// Dimensions the metric can be grouped and filtered by.
    dimensions: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Named {
    name: String,
    description: String,
}

/// Every table and view with its columns, every metric with its dimensions.
#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    tag = "catalog",
    responses((status = 200, description = "the catalog", body = Catalog))
)]
pub(crate) async fn catalog(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Catalog>, ApiError> {
    let catalog = caller.session(&state)?.catalog()?;
    let mut tables = Vec::new();
    for schema_name in catalog.schema_names() {
        let Some(schema) = catalog.schema(&schema_name) else {
            continue;
        };
        for name in schema.table_names() {
            let Some(table) = schema.table(&name).await.map_err(ApiError::internal)? else {
                continue;
            };
            tables.push(Table {
                schema: schema_name.clone(),
                name,
                columns: plain_schema(&table.schema())
                    .fields()
                    .iter()
                    .map(|f| Column {
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                        nullable: f.is_nullable(),
                    })
                    .collect(),
            });
        }
    }
    let model = state.engine.model();
    Ok(Json(Catalog {
        bottleneck_threshold: model.bottleneck_threshold,
        tables,
        metrics: model
            .metrics
            .iter()
            .map(|(name, m)| MetricInfo {
                name: name.clone(),
                description: m.description.clone(),
                dimensions: model.dimensions_of(m),
            })
            .collect(),
        dimensions: model
            .dimensions
            .iter()
            .map(|(name, d)| Named {
                name: name.clone(),
                description: d.description.clone(),
            })
            .collect(),
    }))
}
