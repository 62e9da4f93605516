//! The semantic model's views as T-SQL views: each metric a derived table `[period?, dimensions…,
//! metric]`, stacked with `UNION ALL` and folded per key with `MAX`, as the DataFusion compiler
//! does. Serverless has no `DATETRUNC`: periods come from `DATEADD`/`DATEDIFF` and `CAST(… AS
//! date)`; medians and percentiles from `PERCENTILE_CONT … WITHIN GROUP … OVER`.

use std::cell::RefCell;

use patientflow_semantic::{
    Aggregate, At, Grain, Metric, MetricKind, MetricQuery, Model, PERIOD, Source,
};

mod points;

use super::lake::Lake;
use super::{Batch, ident, literal};

/// Seconds-free origin of hour arithmetic (a Monday, so weeks count from it too).
const ORIGIN: &str = "CAST('1900-01-01' AS datetime2(6))";

/// The model's views, ready to be written over a schema of gold views.
#[derive(Debug)]
pub(super) struct Kpis<'a> {
    model: &'a Model,
    lake: &'a Lake,
}

impl<'a> Kpis<'a> {
    pub(super) fn new(model: &'a Model, lake: &'a Lake) -> Self {
        Self { model, lake }
    }

    /// Every view of the model in schema `out`, reading the gold views of schema `input`;
    /// `available(table, column)` says what `input` shows. A view that needs what is not there
    /// is left out, with a note.
    pub(super) fn views_over(
        &self,
        out: &str,
        input: &str,
        available: &dyn Fn(&str, &str) -> bool,
        notes: &mut Vec<String>,
    ) -> Vec<Batch> {
        let mut batches = Vec::new();
        for (name, query) in &self.model.views {
            let view = View {
                model: self.model,
                lake: self.lake,
                query,
                input,
                uses: RefCell::new(Vec::new()),
            };
            let sql = match view.sql() {
                Ok(sql) => sql,
                Err(reason) => {
                    notes.push(format!("{out}.{name} left out: {reason}"));
                    continue;
                }
            };
            if let Some((t, c)) = view.uses.borrow().iter().find(|(t, c)| !available(t, c)) {
                notes.push(format!(
                    "{out}.{name} left out: it reads `{t}.{c}`, which `{input}` does not show"
                ));
                continue;
            }
            batches.push(Batch {
                name: format!("view {out}.{name}"),
                sql: format!(
                    "CREATE OR ALTER VIEW {}.{} AS\n{sql};",
                    ident(out),
                    ident(name)
                ),
            });
        }
        batches
    }

    /// The views in `out` over every gold table as mirrored.
    pub(super) fn views(&self, out: &str, input: &str, notes: &mut Vec<String>) -> Vec<Batch> {
        let lake = self.lake;
        let available = |t: &str, c: &str| lake.table(t).is_some_and(|t| t.has(c));
        self.views_over(out, input, &available, notes)
    }
}

/// One view being written.
struct View<'a> {
    model: &'a Model,
    lake: &'a Lake,
    query: &'a MetricQuery,
    input: &'a str,
    /// `(table, column)` pairs read, to check against what the input schema shows.
    uses: RefCell<Vec<(String, String)>>,
}

type Sql = Result<String, String>;

impl View<'_> {
    fn sql(&self) -> Sql {
        self.model.validate(self.query).map_err(|e| e.to_string())?;
        let keys = self.key_names();
        let metrics = &self.query.metrics;
        let mut branches = Vec::with_capacity(metrics.len());
        for (i, name) in metrics.iter().enumerate() {
            let frame = self.metric(name)?;
            let mut select: Vec<String> = keys.iter().map(|k| format!("f.{}", ident(k))).collect();
            for (j, other) in metrics.iter().enumerate() {
                select.push(if i == j {
                    format!("f.{}", ident(other))
                } else {
                    format!("NULL AS {}", ident(other))
                });
            }
            branches.push(format!(
                "SELECT {} FROM (\n{}\n) AS f",
                select.join(", "),
                indent(&frame)
            ));
        }
        let mut select: Vec<String> = keys.iter().map(|k| format!("s.{}", ident(k))).collect();
        for name in metrics {
            let metric = self.model.metric(name).map_err(|e| e.to_string())?;
            let folded = format!("MAX(s.{})", ident(name));
            select.push(match metric.kind {
                MetricKind::Bottleneck => format!("CAST({folded} AS bit) AS {}", ident(name)),
                _ if metric.is_count() => format!("COALESCE({folded}, 0) AS {}", ident(name)),
                _ => format!("{folded} AS {}", ident(name)),
            });
        }
        Ok(format!(
            "SELECT {}\nFROM (\n{}\n) AS s{}",
            select.join(", "),
            indent(&branches.join("\nUNION ALL\n")),
            group_by("s", &keys)
        ))
    }

    /// `period` (with a grain), then the dimensions.
    fn key_names(&self) -> Vec<String> {
        self.query.key_names()
    }

    fn source(&self, name: &str) -> Result<&Source, String> {
        self.model
            .sources
            .get(name)
            .ok_or_else(|| format!("the model has no source `{name}`"))
    }

    fn metric(&self, name: &str) -> Sql {
        let metric = self.model.metric(name).map_err(|e| e.to_string())?;
        match metric.kind {
            MetricKind::Aggregate => self.aggregate(name, metric),
            MetricKind::MidnightCensus => self.midnight_census(name),
            MetricKind::Waiting => self.waiting(name, metric),
            MetricKind::Bottleneck => {
                let of = metric.of.as_deref().unwrap_or_default();
                let frame =
                    self.aggregate(name, self.model.metric(of).map_err(|e| e.to_string())?)?;
                let mut select: Vec<String> = self
                    .key_names()
                    .iter()
                    .map(|k| format!("x.{}", ident(k)))
                    .collect();
                let value = format!("x.{}", ident(name));
                select.push(format!(
                    "CASE WHEN {value} IS NULL THEN NULL WHEN {value} >= {} THEN 1 ELSE 0 END AS {}",
                    self.model.bottleneck_threshold,
                    ident(name)
                ));
                Ok(format!(
                    "SELECT {} FROM (\n{}\n) AS x",
                    select.join(", "),
                    indent(&frame)
                ))
            }
        }
    }

    /// The table of a `schema.table` reference of the model.
    fn table_name(reference: &str) -> &str {
        reference.split_once('.').map_or(reference, |(_, t)| t)
    }

    /// The fact of `source` with its joined columns, as derived table rows `b`.
    fn base(&self, source: &Source) -> String {
        let fact = Self::table_name(&source.table);
        let mut select = vec!["f.*".to_string()];
        let mut from = format!("{}.{} AS f", ident(self.input), ident(fact));
        for (i, join) in source.joins.iter().enumerate() {
            let table = Self::table_name(&join.table);
            let alias = format!("j{i}");
            self.uses
                .borrow_mut()
                .push((table.to_string(), join.on.clone()));
            for c in &join.columns {
                self.uses.borrow_mut().push((table.to_string(), c.clone()));
                select.push(format!("{alias}.{}", ident(c)));
            }
            from.push_str(&format!(
                " LEFT JOIN {}.{} AS {alias} ON f.{on} = {alias}.{on}",
                ident(self.input),
                ident(table),
                on = ident(&join.on)
            ));
        }
        format!("SELECT {} FROM {from}", select.join(", "))
    }

    /// Column `name` of a source's rows `b`.
    fn column(&self, source: &Source, name: &str) -> String {
        let table = source
            .joins
            .iter()
            .find(|j| j.columns.iter().any(|c| c == name))
            .map_or(&source.table, |j| &j.table);
        self.uses
            .borrow_mut()
            .push((Self::table_name(table).to_string(), name.to_string()));
        format!("b.{}", ident(name))
    }

    /// Whether a column of the source's fact is an integer (sums of those widen to bigint).
    fn integer(&self, source: &Source, name: &str) -> bool {
        self.lake
            .table(Self::table_name(&source.table))
            .and_then(|t| t.column(name))
            .is_some_and(|c| c.integer)
    }

    fn dimension(&self, source: &Source, name: &str) -> Sql {
        let dim = self.model.dimension(name).map_err(|e| e.to_string())?;
        let column = source
            .dimensions
            .get(name)
            .ok_or_else(|| format!("dimension `{name}` is not available on `{}`", source.table))?;
        let value = self.column(source, column);
        let Some((last, bands)) = dim.bands.split_last() else {
            return Ok(value);
        };
        let otherwise = dim.otherwise.as_deref().map_or("NULL".to_string(), literal);
        let mut case = format!("CASE WHEN {value} IS NULL THEN {otherwise}");
        for band in bands {
            if let Some(below) = band.below {
                case.push_str(&format!(
                    " WHEN {value} < {below} THEN {}",
                    literal(&band.label)
                ));
            }
        }
        match last.below {
            Some(below) => case.push_str(&format!(
                " WHEN {value} < {below} THEN {} ELSE {otherwise} END",
                literal(&last.label)
            )),
            None => case.push_str(&format!(" ELSE {} END", literal(&last.label))),
        }
        Ok(case)
    }

    /// `(alias, expression)` of the keys over `time`.
    fn keys(&self, source: &Source, time: &str) -> Result<Vec<(String, String)>, String> {
        let mut keys = Vec::new();
        if let Some(grain) = self.query.grain {
            keys.push((PERIOD.to_string(), period(grain, time)));
        }
        for dim in &self.query.dimensions {
            keys.push((dim.clone(), self.dimension(source, dim)?));
        }
        Ok(keys)
    }

    /// The query's dimension filters over `source`, as predicates.
    fn filters(&self, source: &Source) -> Result<Vec<String>, String> {
        let mut predicates = Vec::new();
        for (dim, values) in &self.query.filters {
            let values: Vec<String> = values
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(literal(s)),
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!("filter value {other} has no T-SQL literal")),
                })
                .collect::<Result<_, _>>()?;
            predicates.push(format!(
                "{} IN ({})",
                self.dimension(source, dim)?,
                values.join(", ")
            ));
        }
        Ok(predicates)
    }

    fn aggregate(&self, name: &str, metric: &Metric) -> Sql {
        let source = self.source(metric.source.as_deref().unwrap_or_default())?;
        let time = self.column(source, metric.time.as_deref().unwrap_or_default());
        let value = metric
            .value
            .as_ref()
            .ok_or_else(|| format!("metric `{name}` has no value"))?;
        let mut predicates = vec![format!("{time} IS NOT NULL")];
        predicates.extend(self.filters(source)?);
        for (column, text) in &metric.filter {
            predicates.push(format!(
                "{} = {}",
                self.column(source, column),
                literal(text)
            ));
        }
        let keys = self.keys(source, &time)?;
        let aliases: Vec<String> = keys.iter().map(|(a, _)| a.clone()).collect();
        let mut inner: Vec<String> = keys
            .iter()
            .map(|(a, e)| format!("{e} AS {}", ident(a)))
            .collect();
        inner.push(format!("{} AS [__v]", self.column(source, value.column())));
        if let Some(per) = &metric.per {
            inner.push(format!("{} AS [__p]", self.column(source, per.column())));
        }
        inner.push(format!("{time} AS [__t]"));
        let mut outer_where = String::new();
        if metric.at == At::LastHour {
            let partition = self
                .query
                .grain
                .map(|g| format!("PARTITION BY {}", period(g, &time)))
                .unwrap_or_default();
            inner.push(format!("MAX({time}) OVER ({partition}) AS [__last]"));
            outer_where = "\nWHERE k.[__t] = k.[__last]".into();
        }
        if metric.at == At::HourlyMean {
            inner.push(format!("{} AS [__hour]", period(Grain::Hour, &time)));
        }
        let rows = format!(
            "SELECT {}\nFROM ({}) AS b\nWHERE {}",
            inner.join(", "),
            self.base(source),
            predicates.join(" AND ")
        );
        let integer = |a: &Aggregate| self.integer(source, a.column());
        let out = ident(name);
        if let Aggregate::Median(_) | Aggregate::Percentile(..) = value {
            if metric.per.is_some() || metric.at != At::Period {
                return Err(format!(
                    "metric `{name}`: a percentile of a ratio or of a point in time has no T-SQL translation here"
                ));
            }
            let p = match value {
                Aggregate::Percentile(_, p) => *p,
                _ => 0.5,
            };
            let partition = if aliases.is_empty() {
                String::new()
            } else {
                format!(
                    "PARTITION BY {}",
                    aliases
                        .iter()
                        .map(|a| format!("k.{}", ident(a)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let mut select = qualified("k", &aliases);
            select.push(format!(
                "PERCENTILE_CONT({p}) WITHIN GROUP (ORDER BY k.[__v]) OVER ({partition}) AS {out}"
            ));
            return Ok(format!(
                "SELECT DISTINCT {}\nFROM (\n{}\n) AS k{outer_where}",
                select.join(", "),
                indent(&rows)
            ));
        }
        let numerator = aggregate(value, "k.[__v]", integer(value))?;
        let result = match &metric.per {
            Some(per) => format!(
                "CAST({numerator} AS float) / NULLIF(CAST({} AS float), 0)",
                aggregate(per, "k.[__p]", integer(per))?
            ),
            None => numerator,
        };
        if metric.at == At::HourlyMean {
            let mut hourly = aliases.clone();
            hourly.push("__hour".into());
            let mut inner_select = qualified("k", &aliases);
            inner_select.push(format!("{result} AS [__value]"));
            let mut select = qualified("h", &aliases);
            select.push(format!("AVG(CAST(h.[__value] AS float)) AS {out}"));
            return Ok(format!(
                "SELECT {}\nFROM (\n    SELECT {}\n    FROM (\n{}\n    ) AS k{}\n) AS h{}",
                select.join(", "),
                inner_select.join(", "),
                indent(&indent(&rows)),
                group_by("k", &hourly),
                group_by("h", &aliases)
            ));
        }
        let mut select = qualified("k", &aliases);
        select.push(format!("{result} AS {out}"));
        Ok(format!(
            "SELECT {}\nFROM (\n{}\n) AS k{outer_where}{}",
            select.join(", "),
            indent(&rows),
            group_by("k", &aliases)
        ))
    }
}

/// The start of `t`'s period (a `datetime2(6)`), without `DATETRUNC`.
fn period(grain: Grain, t: &str) -> String {
    match grain {
        Grain::Hour => format!("DATEADD(hour, DATEDIFF(hour, {ORIGIN}, {t}), {ORIGIN})"),
        Grain::Day => format!("CAST(CAST({t} AS date) AS datetime2(6))"),
        // ISO weeks from Monday; 1900-01-01 was one.
        Grain::Week => format!(
            "DATEADD(day, -(DATEDIFF(day, {ORIGIN}, {t}) % 7), CAST(CAST({t} AS date) AS datetime2(6)))"
        ),
        Grain::Month => format!("CAST(DATEFROMPARTS(YEAR({t}), MONTH({t}), 1) AS datetime2(6))"),
    }
}

/// An aggregate over `v`; percentiles are window functions, written apart.
fn aggregate(a: &Aggregate, v: &str, integer: bool) -> Sql {
    Ok(match a {
        Aggregate::Sum(_) if integer => format!("SUM(CAST({v} AS bigint))"),
        Aggregate::Sum(_) => format!("SUM({v})"),
        Aggregate::Count(_) => format!("COUNT_BIG({v})"),
        Aggregate::Avg(_) => format!("AVG(CAST({v} AS float))"),
        Aggregate::Max(_) => format!("MAX({v})"),
        Aggregate::Median(_) | Aggregate::Percentile(..) => {
            return Err("a percentile in a ratio has no T-SQL translation here".into());
        }
    })
}

fn qualified(alias: &str, columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .map(|c| format!("{alias}.{}", ident(c)))
        .collect()
}

fn group_by(alias: &str, columns: &[String]) -> String {
    if columns.is_empty() {
        String::new()
    } else {
        format!("\nGROUP BY {}", qualified(alias, columns).join(", "))
    }
}

fn group_by_exprs(keys: &[(String, String)]) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        format!(
            "\nGROUP BY {}",
            keys.iter()
                .map(|(_, e)| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
