//! The metric kinds measured at instants rather than over rows of a period: the midnight
//! census (contract §5) and the emergency-department encounters waiting (contract §5.1).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::{count, max, sum};
use datafusion::logical_expr::{Expr, JoinType, cast, lit};
use datafusion::prelude::{DataFrame, col};

use super::{Scope, date_trunc, qualified, timestamp};
use crate::error::{Error, Result};
use crate::model::{Aggregate, Metric};
use crate::query::Grain;

impl Scope<'_> {
    /// Contract §5.1: the emergency-department encounters waiting at one instant `t` — the end
    /// of the time range, else the latest refresh's as-of time (the largest `as_of` of the
    /// source) — with `wait_minutes` measured at `t`: arrived at or before `t` and within
    /// 24 h of it, neither admitted nor discharged by then.
    pub(super) async fn waiting(&self, name: &str, metric: &Metric) -> Result<DataFrame> {
        if self.query.grain.is_some() {
            return Err(Error::InvalidQuery(format!(
                "metric `{name}` is a point in time: ask for it without a grain (the end of the time range is the instant)"
            )));
        }
        const T: &str = "__t";
        const DAY_MINUTES: f64 = 24.0 * 60.0;
        let source = self.source(metric.source.as_deref().unwrap_or_default())?;
        let value = metric
            .value
            .as_ref()
            .ok_or_else(|| Error::InvalidQuery(format!("metric `{name}` has no value")))?;
        let frame = self.frame(source).await?;
        let (frame, t) = match self.to {
            Some(to) => (frame, timestamp(to)),
            None => {
                let latest = self
                    .ctx
                    .table(qualified(&source.table))
                    .await?
                    .aggregate(vec![], vec![max(col("as_of")).alias(T)])?;
                (frame.join_on(latest, JoinType::Inner, [])?, col(T))
            }
        };
        let column = |c: &str| Self::column(source, c);
        let micros =
            cast(t.clone(), DataType::Int64) - cast(column("arrival_time"), DataType::Int64);
        let minutes = cast(micros, DataType::Float64) / lit(60_000_000.0);
        let not_by_t = |c: &str| column(c).is_null().or(column(c).gt(t.clone()));
        let waiting = self.filtered(
            source,
            column("arrival_time")
                .lt_eq(t.clone())
                .and(minutes.clone().lt_eq(lit(DAY_MINUTES)))
                .and(not_by_t("admission_time"))
                .and(not_by_t("discharge_time")),
        )?;
        let mut keys = Vec::new();
        for dim in &self.query.dimensions {
            keys.push(self.dimension(source, dim)?.alias(dim));
        }
        let aggregate = match value {
            Aggregate::Count(c) => count(column(c)),
            Aggregate::Max(c) if c == "wait_minutes" => max(minutes),
            other => {
                return Err(Error::InvalidQuery(format!(
                    "metric `{name}`: a waiting metric counts encounters or takes the max of `wait_minutes`, not {other:?}"
                )));
            }
        };
        let key_names = self.key_names();
        let result = frame
            .filter(waiting)?
            .aggregate(keys, vec![aggregate.alias(name)])?;
        Ok(result.select(
            key_names
                .iter()
                .map(|k| col(k.as_str()))
                .chain([col(name)])
                .collect::<Vec<_>>(),
        )?)
    }

    /// Contract §5: census at 00:00 UTC of the next day plus the stays admitted and discharged
    /// within the day. Reads the `census` and `stays` sources.
    pub(super) async fn midnight_census(&self, name: &str) -> Result<DataFrame> {
        if self.query.grain != Some(Grain::Day) {
            return Err(Error::InvalidQuery(format!(
                "metric `{name}` is daily: ask for it with grain `day`"
            )));
        }
        const DAY: i64 = 86_400_000_000;
        let census = self.source("census")?;
        let hour = Self::column(census, "hour_start");
        let midnights = self
            .restrict(self.frame(census).await?, census, &hour, DAY)?
            .filter(date_trunc(lit("day"), hour.clone()).eq(hour.clone()))?;
        // The census at the next midnight belongs to the day before it.
        let day_before = hour.clone() - lit(ScalarValue::new_interval_dt(1, 0));
        let a = midnights.aggregate(
            self.keys(census, &day_before)?,
            vec![cast(sum(Self::column(census, "census")), DataType::Int64).alias("__value")],
        )?;

        let stays = self.source("stays")?;
        let admitted = Self::column(stays, "admission_time");
        let discharged = Self::column(stays, "discharge_time");
        let same_day = self
            .restrict(self.frame(stays).await?, stays, &admitted, 0)?
            .filter(
                date_trunc(lit("day"), admitted.clone())
                    .eq(date_trunc(lit("day"), discharged.clone())),
            )?;
        let b = same_day.aggregate(
            self.keys(stays, &admitted)?,
            vec![count(Self::column(stays, "stay_key")).alias("__value")],
        )?;
        let keys: Vec<Expr> = self.key_names().iter().map(|k| col(k.as_str())).collect();
        Ok(a.union(b)?.aggregate(
            keys,
            vec![cast(sum(col("__value")), DataType::Int64).alias(name)],
        )?)
    }
}
