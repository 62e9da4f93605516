//! An aggregate over one column, as the YAML model spells it: exactly one function key naming
//! the column (`{sum: census}`, `{percentile: ed_wait_minutes, p: 0.9}`).

use serde::{Deserialize, Serialize};

/// An aggregate function over one column.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    try_from = "AggregateSpec",
    into = "AggregateSpec"
)]
pub enum Aggregate {
    /// Sum of the column.
    Sum(String),
    /// Rows where the column is not NULL.
    Count(String),
    /// Mean of the column.
    Avg(String),
    /// Largest value of the column.
    Max(String),
    /// Median of the column (exact).
    Median(String),
    /// Continuous percentile `p` (0–1) of the column (exact).
    Percentile(String, f64),
}

impl Aggregate {
    /// The column aggregated.
    pub fn column(&self) -> &str {
        match self {
            Aggregate::Sum(c)
            | Aggregate::Count(c)
            | Aggregate::Avg(c)
            | Aggregate::Max(c)
            | Aggregate::Median(c)
            | Aggregate::Percentile(c, _) => c,
        }
    }
}

/// The YAML form of an [`Aggregate`]: exactly one function key, naming the column.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AggregateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    median: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    percentile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<f64>,
}

impl TryFrom<AggregateSpec> for Aggregate {
    type Error = String;

    fn try_from(s: AggregateSpec) -> std::result::Result<Self, String> {
        let found: Vec<Aggregate> = [
            s.sum.map(Aggregate::Sum),
            s.count.map(Aggregate::Count),
            s.avg.map(Aggregate::Avg),
            s.max.map(Aggregate::Max),
            s.median.map(Aggregate::Median),
            s.percentile
                .map(|c| Aggregate::Percentile(c, s.p.unwrap_or(f64::NAN))),
        ]
        .into_iter()
        .flatten()
        .collect();
        match found.as_slice() {
            [Aggregate::Percentile(_, p)] if !(0.0..=1.0).contains(p) => {
                Err("`percentile` needs `p` between 0 and 1".into())
            }
            [one] => Ok(one.clone()),
            _ => Err(
                "an aggregate has exactly one of sum, count, avg, max, median, percentile".into(),
            ),
        }
    }
}

impl From<Aggregate> for AggregateSpec {
    fn from(a: Aggregate) -> Self {
        let mut s = AggregateSpec::default();
        match a {
            Aggregate::Sum(c) => s.sum = Some(c),
            Aggregate::Count(c) => s.count = Some(c),
            Aggregate::Avg(c) => s.avg = Some(c),
            Aggregate::Max(c) => s.max = Some(c),
            Aggregate::Median(c) => s.median = Some(c),
            Aggregate::Percentile(c, p) => {
                s.percentile = Some(c);
                s.p = Some(p);
            }
        }
        s
    }
}
