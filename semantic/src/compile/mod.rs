//! Compiles a [`MetricQuery`] into a DataFusion plan, with the DataFrame API (never SQL text).
//!
//! Each metric becomes a frame `[period?, dimensions…, metric]`. One metric is that frame; more
//! are stacked with NULLs for the other metrics and folded per key with `max`, so metrics of
//! different sources and time columns line up on the same keys.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::{coalesce, nullif};
use datafusion::functions_aggregate::expr_fn::{avg, count, max, median, percentile_cont, sum};
use datafusion::logical_expr::{Expr, JoinType, SortExpr, cast, lit, when};
use datafusion::prelude::{DataFrame, SessionContext, col};

use crate::catalog::CATALOG;
use crate::error::{Error, Result};
use crate::functions::date_trunc as utc_date_trunc;
use crate::model::{Aggregate, At, Metric, MetricKind, Model, Source, listing};
use crate::query::MetricQuery;

mod points;

/// Name of the time-period column of a query with a grain.
pub const PERIOD: &str = "period";

/// The metric query as a DataFrame over the tables of `ctx`'s `patientflow` catalog.
pub async fn compile(
    model: &Model,
    ctx: &SessionContext,
    query: &MetricQuery,
) -> Result<DataFrame> {
    model.validate(query)?;
    let scope = Scope::new(model, ctx, query)?;
    let mut frames = Vec::with_capacity(query.metrics.len());
    for name in &query.metrics {
        frames.push(scope.metric(name).await?);
    }
    let keys = scope.key_names();
    let mut df = if frames.len() == 1 {
        frames.remove(0)
    } else {
        let counts: Vec<bool> = query
            .metrics
            .iter()
            .map(|m| model.metric(m).is_ok_and(Metric::is_count))
            .collect();
        stack(frames, &keys, &query.metrics, &counts)?
    };
    let columns: Vec<String> = keys.iter().chain(&query.metrics).cloned().collect();
    let order: Vec<SortExpr> = if query.order.is_empty() {
        keys.iter()
            .map(|k| col(k.as_str()).sort(true, false))
            .collect()
    } else {
        query
            .order
            .iter()
            .map(|o| {
                let (name, asc) = o
                    .strip_prefix('-')
                    .map_or((o.as_str(), true), |n| (n, false));
                if columns.iter().any(|c| c == name) {
                    Ok(col(name).sort(asc, false))
                } else {
                    Err(Error::InvalidQuery(format!(
                        "cannot order by `{name}`; the columns are: {}",
                        listing(&columns)
                    )))
                }
            })
            .collect::<Result<_>>()?
    };
    if !order.is_empty() {
        df = df.sort(order)?;
    }
    if let Some(n) = query.limit {
        df = df.limit(0, Some(n))?;
    }
    Ok(df)
}

/// Stacks one frame per metric (`[keys…, metric]`) into `[keys…, metrics…]`, one row per key.
/// A count with no rows for a key is 0; other metrics are NULL there.
fn stack(
    frames: Vec<DataFrame>,
    keys: &[String],
    metrics: &[String],
    counts: &[bool],
) -> Result<DataFrame> {
    let types: Vec<DataType> = frames
        .iter()
        .zip(metrics)
        .map(|(f, m)| {
            Ok(f.schema()
                .field_with_unqualified_name(m)?
                .data_type()
                .clone())
        })
        .collect::<Result<_>>()?;
    let mut stacked: Option<DataFrame> = None;
    for (i, frame) in frames.into_iter().enumerate() {
        let mut select: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
        for (j, (m, t)) in metrics.iter().zip(&types).enumerate() {
            select.push(if i == j {
                col(m.as_str())
            } else {
                lit(ScalarValue::try_from(t)?).alias(m)
            });
        }
        let frame = frame.select(select)?;
        stacked = Some(match stacked {
            None => frame,
            Some(s) => s.union(frame)?,
        });
    }
    let stacked = stacked.ok_or_else(|| Error::InvalidQuery("no metrics".into()))?;
    Ok(stacked.aggregate(
        keys.iter().map(|k| col(k.as_str())).collect(),
        metrics
            .iter()
            .zip(counts)
            .map(|(m, count)| {
                let value = max(col(m.as_str()));
                let value = if *count {
                    coalesce(vec![value, lit(0i64)])
                } else {
                    value
                };
                value.alias(m)
            })
            .collect(),
    )?)
}

/// What every metric of one query shares: the model, the tables, the keys and the filters.
struct Scope<'a> {
    model: &'a Model,
    ctx: &'a SessionContext,
    query: &'a MetricQuery,
    from: Option<i64>,
    to: Option<i64>,
}

/// Alias of the fact table in a source frame.
const FACT: &str = "f";

impl<'a> Scope<'a> {
    fn new(model: &'a Model, ctx: &'a SessionContext, query: &'a MetricQuery) -> Result<Self> {
        let (from, to) = query
            .time_range
            .as_ref()
            .map_or(Ok((None, None)), |r| r.bounds())?;
        Ok(Self {
            model,
            ctx,
            query,
            from,
            to,
        })
    }

    /// Output key columns: `period` (with a grain), then the dimensions.
    fn key_names(&self) -> Vec<String> {
        self.query.key_names()
    }

    fn source(&self, name: &str) -> Result<&'a Source> {
        self.model.sources.get(name).ok_or_else(|| {
            Error::InvalidQuery(format!(
                "the model has no source `{name}`; known: {}",
                listing(self.model.sources.keys())
            ))
        })
    }

    async fn metric(&self, name: &str) -> Result<DataFrame> {
        let metric = self.model.metric(name)?;
        match metric.kind {
            MetricKind::Aggregate => self.aggregate(name, metric).await,
            MetricKind::MidnightCensus => self.midnight_census(name).await,
            MetricKind::Waiting => self.waiting(name, metric).await,
            MetricKind::Bottleneck => {
                let of = metric.of.as_deref().unwrap_or_default();
                let frame = self.aggregate(name, self.model.metric(of)?).await?;
                let mut select: Vec<Expr> =
                    self.key_names().iter().map(|k| col(k.as_str())).collect();
                select.push(
                    col(name)
                        .gt_eq(lit(self.model.bottleneck_threshold))
                        .alias(name),
                );
                Ok(frame.select(select)?)
            }
        }
    }

    /// The fact table of `source` (alias `f`) with its joins.
    async fn frame(&self, source: &Source) -> Result<DataFrame> {
        let mut df = self
            .ctx
            .table(qualified(&source.table))
            .await?
            .alias(FACT)?;
        for (i, join) in source.joins.iter().enumerate() {
            let alias = format!("j{i}");
            let columns: Vec<&str> = std::iter::once(join.on.as_str())
                .chain(join.columns.iter().map(String::as_str))
                .collect();
            let right = self
                .ctx
                .table(qualified(&join.table))
                .await?
                .select_columns(&columns)?
                .alias(&alias)?;
            df = df.join_on(
                right,
                JoinType::Left,
                [col(format!("{FACT}.{}", join.on)).eq(col(format!("{alias}.{}", join.on)))],
            )?;
        }
        Ok(df)
    }

    /// A column of `source`'s frame, qualified by the table it comes from.
    fn column(source: &Source, name: &str) -> Expr {
        match source
            .joins
            .iter()
            .position(|j| j.columns.iter().any(|c| c == name))
        {
            Some(i) => col(format!("j{i}.{name}")),
            None => col(format!("{FACT}.{name}")),
        }
    }

    /// The expression of dimension `name` over `source`.
    fn dimension(&self, source: &Source, name: &str) -> Result<Expr> {
        let dim = self.model.dimension(name)?;
        let column = source.dimensions.get(name).ok_or_else(|| {
            Error::InvalidQuery(format!(
                "dimension `{name}` is not available here; it offers: {}",
                listing(source.dimensions.keys())
            ))
        })?;
        let value = Self::column(source, column);
        let Some((last, bands)) = dim.bands.split_last() else {
            return Ok(value);
        };
        let otherwise = || lit(ScalarValue::Utf8(dim.otherwise.clone()));
        let mut case = when(value.clone().is_null(), otherwise());
        for band in bands {
            if let Some(below) = band.below {
                case.when(value.clone().lt(lit(below)), lit(band.label.as_str()));
            }
        }
        let rest = match last.below {
            Some(below) => {
                case.when(value.lt(lit(below)), lit(last.label.as_str()));
                otherwise()
            }
            None => lit(last.label.as_str()),
        };
        Ok(case.otherwise(rest)?)
    }

    /// Rows of `df` whose `time` lies in the query's range shifted by `shift` micros, and whose
    /// dimensions pass the filters.
    fn restrict(
        &self,
        df: DataFrame,
        source: &Source,
        time: &Expr,
        shift: i64,
    ) -> Result<DataFrame> {
        let mut predicate = time.clone().is_not_null();
        if let Some(from) = self.from {
            predicate = predicate.and(time.clone().gt_eq(timestamp(from + shift)));
        }
        if let Some(to) = self.to {
            predicate = predicate.and(time.clone().lt(timestamp(to + shift)));
        }
        Ok(df.filter(self.filtered(source, predicate)?)?)
    }

    /// `predicate` and the query's dimension filters over `source`.
    fn filtered(&self, source: &Source, mut predicate: Expr) -> Result<Expr> {
        for (dim, values) in &self.query.filters {
            let values = values
                .iter()
                .map(json_literal)
                .collect::<Result<Vec<_>>>()?;
            predicate = predicate.and(self.dimension(source, dim)?.in_list(values, false));
        }
        Ok(predicate)
    }

    /// Key expressions: `period` from `time` (with a grain), then the dimensions.
    fn keys(&self, source: &Source, time: &Expr) -> Result<Vec<Expr>> {
        let mut keys = Vec::new();
        if let Some(grain) = self.query.grain {
            keys.push(date_trunc(lit(grain.unit()), time.clone()).alias(PERIOD));
        }
        for dim in &self.query.dimensions {
            keys.push(self.dimension(source, dim)?.alias(dim));
        }
        Ok(keys)
    }

    async fn aggregate(&self, name: &str, metric: &Metric) -> Result<DataFrame> {
        let source = self.source(metric.source.as_deref().unwrap_or_default())?;
        let time = Self::column(source, metric.time.as_deref().unwrap_or_default());
        let value = metric
            .value
            .as_ref()
            .ok_or_else(|| Error::InvalidQuery(format!("metric `{name}` has no value")))?;
        let mut df = self.restrict(self.frame(source).await?, source, &time, 0)?;
        for (column, value) in &metric.filter {
            df = df.filter(Self::column(source, column).eq(lit(value.as_str())))?;
        }
        if metric.at == At::LastHour {
            // Keep only the rows of the last hour present in each period.
            const LAST: &str = "__last_hour";
            let by: Vec<Expr> = self
                .query
                .grain
                .map(|g| date_trunc(lit(g.unit()), time.clone()).alias("__last_period"))
                .into_iter()
                .collect();
            let last = df
                .clone()
                .aggregate(by, vec![max(time.clone()).alias(LAST)])?;
            df = df.join_on(last, JoinType::Inner, [time.clone().eq(col(LAST))])?;
        }
        let keys = self.keys(source, &time)?;
        let key_names = self.key_names();
        let key_cols = || key_names.iter().map(|k| col(k.as_str()));
        let mut aggregates = vec![aggregate(value).alias("__value")];
        if let Some(per) = &metric.per {
            aggregates.push(aggregate(per).alias("__per"));
        }
        let result = if metric.at == At::HourlyMean {
            let mut hourly_keys = keys;
            hourly_keys.push(date_trunc(lit("hour"), time).alias("__hour"));
            df.aggregate(hourly_keys, aggregates)?.aggregate(
                key_cols().collect(),
                vec![avg(col("__value")).alias("__value")],
            )?
        } else {
            df.aggregate(keys, aggregates)?
        };
        let value = match &metric.per {
            Some(_) => {
                cast(col("__value"), DataType::Float64)
                    / nullif(cast(col("__per"), DataType::Float64), lit(0.0))
            }
            None => col("__value"),
        };
        Ok(result.select(key_cols().chain([value.alias(name)]).collect::<Vec<_>>())?)
    }
}

fn aggregate(a: &Aggregate) -> Expr {
    let c = col(format!("{FACT}.{}", a.column()));
    match a {
        Aggregate::Sum(_) => sum(c),
        Aggregate::Count(_) => count(c),
        Aggregate::Avg(_) => avg(c),
        Aggregate::Max(_) => max(c),
        Aggregate::Median(_) => median(c),
        Aggregate::Percentile(_, p) => percentile_cont(c.sort(true, false), lit(*p)),
    }
}

/// `date_trunc(unit, t)` with the UTC fast path.
fn date_trunc(unit: Expr, t: Expr) -> Expr {
    utc_date_trunc().call(vec![unit, t])
}

/// `schema.table` as a name in the `patientflow` catalog.
fn qualified(table: &str) -> String {
    format!("{CATALOG}.{table}")
}

fn timestamp(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

/// A filter value from JSON: numbers and strings (and booleans) only.
fn json_literal(v: &serde_json::Value) -> Result<Expr> {
    match v {
        serde_json::Value::String(s) => Ok(lit(s.as_str())),
        serde_json::Value::Bool(b) => Ok(lit(*b)),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(lit(i)),
            (None, Some(f)) => Ok(lit(f)),
            _ => Err(Error::InvalidQuery(format!(
                "filter value {n} is out of range"
            ))),
        },
        other => Err(Error::InvalidQuery(format!(
            "filter values are strings or numbers, not {other}"
        ))),
    }
}
