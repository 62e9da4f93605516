//! `/api/v1`: one file per resource.

pub(crate) mod alerts;
pub(crate) mod catalog;
pub(crate) mod freshness;
pub(crate) mod kpis;
pub(crate) mod pipelines;
pub(crate) mod quality;
pub(crate) mod query;
pub(crate) mod sql;
