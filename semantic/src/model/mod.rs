//! The semantic model: sources, dimensions, metrics and views, read from YAML.
//!
//! The model is plain data (`deny_unknown_fields` everywhere); [`Model::parse`] checks that
//! every reference in it resolves, so a query can only fail on what the *query* asks for.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::query::MetricQuery;

mod aggregate;

pub use aggregate::Aggregate;

/// The model shipped with patientflow (`semantic/model/patientflow.yaml`).
pub(crate) const BUILT_IN: &str = include_str!("../../model/patientflow.yaml");

/// A semantic model.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Occupancy rate at or above which a department is a bottleneck (contract §5: 0.85).
    #[serde(default = "default_threshold")]
    pub bottleneck_threshold: f64,
    /// Fact tables that metrics read, by name.
    pub sources: BTreeMap<String, Source>,
    /// Dimensions a query may group and filter by, by name.
    pub dimensions: BTreeMap<String, Dimension>,
    /// Named metrics.
    pub metrics: BTreeMap<String, Metric>,
    /// Metric queries published as SQL views under `kpi`.
    #[serde(default)]
    pub views: BTreeMap<String, MetricQuery>,
}

fn default_threshold() -> f64 {
    0.85
}

/// A fact table with the dimension columns it offers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `schema.table` in the `patientflow` catalog.
    pub table: String,
    /// Dimension tables joined (left) to the fact for more columns.
    #[serde(default)]
    pub joins: Vec<Join>,
    /// Dimension name → column of the fact (or of a join).
    pub dimensions: BTreeMap<String, String>,
}

/// A left join of a dimension table on one key column of the same name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// `schema.table` in the `patientflow` catalog.
    pub table: String,
    /// Key column present in both tables.
    pub on: String,
    /// Columns taken from the joined table.
    pub columns: Vec<String>,
}

/// A dimension: a column as is, or an integer column in labelled bands.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// What it is, for the catalog and the docs.
    pub description: String,
    /// Bands in ascending order; the last one without `below` takes the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bands: Vec<Band>,
    /// Label of values in no band (NULL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
}

/// One band of a banded dimension.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// The label values in the band get.
    pub label: String,
    /// Exclusive upper bound; `None` for the last band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<i64>,
}

/// A named metric.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// What it means, for the catalog and the docs.
    pub description: String,
    /// How it is computed; `aggregate` unless said otherwise.
    #[serde(default)]
    pub kind: MetricKind,
    /// Source of an aggregate metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Timestamp column that places a row in a period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Which rows of a period count.
    #[serde(default)]
    pub at: At,
    /// The aggregate (the numerator of a ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Aggregate>,
    /// The denominator, for a ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<Aggregate>,
    /// The occupancy metric a `bottleneck` compares with the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    /// Only the source's rows whose column (key) holds this text (value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
}

impl Metric {
    /// Whether the metric counts rows (so no rows means 0, not NULL).
    pub fn is_count(&self) -> bool {
        matches!(self.kind, MetricKind::Aggregate | MetricKind::Waiting)
            && self.per.is_none()
            && matches!(self.value, Some(Aggregate::Count(_)))
    }
}

/// How a metric is computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// An aggregate (or a ratio of two) over a source.
    #[default]
    Aggregate,
    /// Census at the next midnight plus same-day stays (contract §5); grain day.
    MidnightCensus,
    /// `occupancy_rate_point ≥ bottleneck_threshold`, per hospital and department.
    Bottleneck,
    /// An aggregate over the emergency-department encounters waiting at one instant (contract
    /// §5.1): the end of the time range, else the as-of time of the latest refresh. Its
    /// `wait_minutes` are measured at that instant; no grain.
    Waiting,
}

/// Which rows of a period an aggregate metric reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum At {
    /// Every row whose time is in the period.
    #[default]
    Period,
    /// Only the rows of the last hour of the period present in the data (a point in time).
    LastHour,
    /// The aggregate per hour, then the mean over the hours of the period.
    HourlyMean,
}

/// `known` as a comma-separated list, for error messages.
pub(crate) fn listing<'a>(known: impl IntoIterator<Item = &'a String>) -> String {
    known
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Model {
    /// The built-in model.
    pub fn built_in() -> Result<Self> {
        Self::parse(BUILT_IN, "built-in")
    }

    /// Reads a model file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Model {
            origin: origin.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses and checks a model; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Model {
            origin: origin.to_string(),
            reason,
        };
        let model: Model = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        model.check().map_err(invalid)?;
        Ok(model)
    }

    /// Every reference resolves: sources, dimensions, time columns, views.
    fn check(&self) -> std::result::Result<(), String> {
        if !(0.0..=10.0).contains(&self.bottleneck_threshold) {
            return Err("bottleneck_threshold must be a rate such as 0.85".into());
        }
        for (name, source) in &self.sources {
            if source.table.split('.').count() != 2 {
                return Err(format!(
                    "source `{name}`: table `{}` must be `schema.table`",
                    source.table
                ));
            }
            for dim in source.dimensions.keys() {
                if !self.dimensions.contains_key(dim) {
                    return Err(format!(
                        "source `{name}` offers dimension `{dim}`, which is not declared; declared: {}",
                        listing(self.dimensions.keys())
                    ));
                }
            }
        }
        for (name, dim) in &self.dimensions {
            if dim.bands.iter().rev().skip(1).any(|b| b.below.is_none()) {
                return Err(format!(
                    "dimension `{name}`: only the last band may omit `below`"
                ));
            }
        }
        for (name, metric) in &self.metrics {
            match metric.kind {
                MetricKind::Aggregate | MetricKind::Waiting => {}
                MetricKind::Bottleneck => {
                    let of = metric.of.as_deref().unwrap_or_default();
                    match self.metrics.get(of) {
                        Some(m) if m.kind == MetricKind::Aggregate => continue,
                        _ => {
                            return Err(format!(
                                "metric `{name}`: `of` must name an aggregate metric such as occupancy_rate_point"
                            ));
                        }
                    }
                }
                MetricKind::MidnightCensus => {
                    for source in ["census", "stays"] {
                        if !self.sources.contains_key(source) {
                            return Err(format!(
                                "metric `{name}` reads source `{source}`, which is missing"
                            ));
                        }
                    }
                    continue;
                }
            }
            let source = metric
                .source
                .as_ref()
                .ok_or(format!("metric `{name}` needs a source"))?;
            if !self.sources.contains_key(source) {
                return Err(format!(
                    "metric `{name}`: unknown source `{source}`; known: {}",
                    listing(self.sources.keys())
                ));
            }
            if metric.value.is_none() {
                return Err(format!("metric `{name}` needs a `value`"));
            }
            if metric.time.is_none() && metric.kind == MetricKind::Aggregate {
                return Err(format!("metric `{name}` needs a `time` column"));
            }
        }
        for (name, view) in &self.views {
            self.validate(view)
                .map_err(|e| format!("view `{name}`: {e}"))?;
        }
        Ok(())
    }

    /// The metric called `name`, or an error listing the metrics there are.
    pub fn metric(&self, name: &str) -> Result<&Metric> {
        self.metrics.get(name).ok_or_else(|| {
            Error::InvalidQuery(format!(
                "unknown metric `{name}`; known: {}",
                listing(self.metrics.keys())
            ))
        })
    }

    /// The dimension called `name`, or an error listing the dimensions there are.
    pub fn dimension(&self, name: &str) -> Result<&Dimension> {
        self.dimensions.get(name).ok_or_else(|| {
            Error::InvalidQuery(format!(
                "unknown dimension `{name}`; known: {}",
                listing(self.dimensions.keys())
            ))
        })
    }

    /// The dimensions a metric can be grouped and filtered by.
    pub fn dimensions_of(&self, metric: &Metric) -> Vec<String> {
        let offered = |source: &str| -> Vec<String> {
            self.sources
                .get(source)
                .map(|s| s.dimensions.keys().cloned().collect())
                .unwrap_or_default()
        };
        match metric.kind {
            MetricKind::Aggregate | MetricKind::Waiting => {
                offered(metric.source.as_deref().unwrap_or_default())
            }
            MetricKind::Bottleneck => metric
                .of
                .as_deref()
                .and_then(|of| self.metrics.get(of))
                .map(|m| self.dimensions_of(m))
                .unwrap_or_default(),
            MetricKind::MidnightCensus => {
                let stays = offered("stays");
                offered("census")
                    .into_iter()
                    .filter(|d| stays.contains(d))
                    .collect()
            }
        }
    }

    /// The `schema.table`s a query reads.
    pub fn tables_read(&self, query: &MetricQuery) -> std::collections::BTreeSet<String> {
        let mut sources = Vec::new();
        let mut metrics: Vec<&str> = query.metrics.iter().map(String::as_str).collect();
        while let Some(name) = metrics.pop() {
            let Some(metric) = self.metrics.get(name) else {
                continue;
            };
            match metric.kind {
                MetricKind::Aggregate | MetricKind::Waiting => {
                    sources.extend(metric.source.as_deref());
                }
                MetricKind::MidnightCensus => sources.extend(["census", "stays"]),
                MetricKind::Bottleneck => metrics.extend(metric.of.as_deref()),
            }
        }
        sources
            .into_iter()
            .filter_map(|s| self.sources.get(s))
            .flat_map(|s| {
                std::iter::once(s.table.clone()).chain(s.joins.iter().map(|j| j.table.clone()))
            })
            .collect()
    }

    /// Checks that a query names only what exists and fits together, without planning it.
    pub fn validate(&self, query: &MetricQuery) -> Result<()> {
        if query.metrics.is_empty() {
            return Err(Error::InvalidQuery(format!(
                "a query needs at least one metric; known: {}",
                listing(self.metrics.keys())
            )));
        }
        for dim in query.dimensions.iter().chain(query.filters.keys()) {
            self.dimension(dim)?;
        }
        for name in &query.metrics {
            let metric = self.metric(name)?;
            let offered = self.dimensions_of(metric);
            for dim in query.dimensions.iter().chain(query.filters.keys()) {
                if !offered.contains(dim) {
                    return Err(Error::InvalidQuery(format!(
                        "dimension `{dim}` is not available for metric `{name}`; it offers: {}",
                        listing(&offered)
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_model_loads() {
        let model = Model::built_in().unwrap();
        assert_eq!(model.bottleneck_threshold, 0.85);
        assert!(model.metrics.contains_key("occupancy_rate"));
        assert_eq!(
            model.metrics["ed_wait_p90_minutes"].value,
            Some(Aggregate::Percentile("ed_wait_minutes".into(), 0.9))
        );
    }

    #[test]
    fn bad_models_say_what_is_wrong() {
        let base = BUILT_IN.replace(
            "source: stays\n    time: admission_time\n    value: {count: stay_key}",
            "source: nowhere\n    time: admission_time\n    value: {count: stay_key}",
        );
        let err = Model::parse(&base, "test.yaml").unwrap_err().to_string();
        assert!(err.contains("unknown source `nowhere`"), "{err}");
        let err = Model::parse("sources: {}\ndimensions: {}\nmetrics: {x: {description: d, source: s, time: t, value: {sum: a, avg: b}}}", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly one of"), "{err}");
        let err = Model::parse("bogus: 1", "t").unwrap_err().to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn queries_name_what_exists() {
        let model = Model::built_in().unwrap();
        let q = |m: &str, d: &str| MetricQuery {
            metrics: vec![m.into()],
            dimensions: vec![d.into()],
            ..MetricQuery::default()
        };
        let err = model
            .validate(&q("alos", "hospital"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown metric `alos`; known: admissions, alos_hours"),
            "{err}"
        );
        let err = model
            .validate(&q("census", "gender"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "dimension `gender` is not available for metric `census`; it offers: department, hospital"
        );
        let err = model
            .validate(&q("admissions", "ward"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown dimension `ward`; known: age_band, department"),
            "{err}"
        );
        model.validate(&q("admissions", "age_band")).unwrap();
    }
}
