//! The metric kinds measured at instants rather than over rows of a period, in T-SQL: the
//! midnight census (contract §5) and the emergency-department encounters waiting (§5.1).

use patientflow_semantic::{Aggregate, Grain, Metric};

use super::{Sql, View, group_by, group_by_exprs, indent, qualified};
use crate::synapse::ident;

impl View<'_> {
    /// Contract §5: census at the next midnight (UTC) plus the stays admitted and discharged
    /// within the day.
    pub(super) fn midnight_census(&self, name: &str) -> Sql {
        if self.query.grain != Some(Grain::Day) {
            return Err(format!(
                "metric `{name}` is daily: its view needs grain `day`"
            ));
        }
        let census = self.source("census")?;
        let hour = self.column(census, "hour_start");
        let day_before = format!("DATEADD(day, -1, {hour})");
        let a_keys = self.keys(census, &day_before)?;
        let mut a_predicates = vec![
            format!("{hour} IS NOT NULL"),
            format!("{hour} = CAST(CAST({hour} AS date) AS datetime2(6))"),
        ];
        a_predicates.extend(self.filters(census)?);
        let a = format!(
            "SELECT {}, SUM(CAST({} AS bigint)) AS [__value]\nFROM ({}) AS b\nWHERE {}{}",
            a_keys
                .iter()
                .map(|(a, e)| format!("{e} AS {}", ident(a)))
                .collect::<Vec<_>>()
                .join(", "),
            self.column(census, "census"),
            self.base(census),
            a_predicates.join(" AND "),
            group_by_exprs(&a_keys)
        );
        let stays = self.source("stays")?;
        let admitted = self.column(stays, "admission_time");
        let discharged = self.column(stays, "discharge_time");
        let b_keys = self.keys(stays, &admitted)?;
        let mut b_predicates = vec![
            format!("{admitted} IS NOT NULL"),
            format!("CAST({admitted} AS date) = CAST({discharged} AS date)"),
        ];
        b_predicates.extend(self.filters(stays)?);
        let b = format!(
            "SELECT {}, COUNT_BIG({}) AS [__value]\nFROM ({}) AS b\nWHERE {}{}",
            b_keys
                .iter()
                .map(|(a, e)| format!("{e} AS {}", ident(a)))
                .collect::<Vec<_>>()
                .join(", "),
            self.column(stays, "stay_key"),
            self.base(stays),
            b_predicates.join(" AND "),
            group_by_exprs(&b_keys)
        );
        let aliases = self.key_names();
        let mut select = qualified("u", &aliases);
        select.push(format!("SUM(u.[__value]) AS {}", ident(name)));
        Ok(format!(
            "SELECT {}\nFROM (\n{}\nUNION ALL\n{}\n) AS u{}",
            select.join(", "),
            indent(&a),
            indent(&b),
            group_by("u", &aliases)
        ))
    }

    /// Contract §5.1: encounters waiting at the latest refresh's as-of time, with their waits
    /// measured then (a view has no time range, so the instant is always the as-of time).
    pub(super) fn waiting(&self, name: &str, metric: &Metric) -> Sql {
        if self.query.grain.is_some() {
            return Err(format!(
                "metric `{name}` is a point in time: its view has no grain"
            ));
        }
        let source = self.source(metric.source.as_deref().unwrap_or_default())?;
        let fact = Self::table_name(&source.table);
        let arrival = self.column(source, "arrival_time");
        let minutes = format!("DATEDIFF_BIG(microsecond, {arrival}, t.[__t]) / 60000000.0");
        let not_by_t = |c: &str| {
            let c = self.column(source, c);
            format!("({c} IS NULL OR {c} > t.[__t])")
        };
        let mut predicates = vec![
            format!("{arrival} <= t.[__t]"),
            format!("{minutes} <= 1440.0"),
            not_by_t("admission_time"),
            not_by_t("discharge_time"),
        ];
        predicates.extend(self.filters(source)?);
        self.uses
            .borrow_mut()
            .push((fact.to_string(), "as_of".into()));
        let keys = self.keys(source, &arrival)?;
        let aggregate = match metric.value.as_ref() {
            Some(Aggregate::Count(c)) => format!("COUNT_BIG({})", self.column(source, c)),
            Some(Aggregate::Max(c)) if c == "wait_minutes" => format!("MAX({minutes})"),
            other => {
                return Err(format!(
                    "metric `{name}`: a waiting metric counts encounters or takes the max of `wait_minutes`, not {other:?}"
                ));
            }
        };
        let mut select: Vec<String> = keys
            .iter()
            .map(|(a, e)| format!("{e} AS {}", ident(a)))
            .collect();
        select.push(format!("{aggregate} AS {}", ident(name)));
        Ok(format!(
            "SELECT {}\nFROM ({}) AS b\nCROSS JOIN (SELECT MAX([as_of]) AS [__t] FROM {}.{}) AS t\nWHERE {}{}",
            select.join(", "),
            self.base(source),
            ident(self.input),
            ident(fact),
            predicates.join(" AND "),
            group_by_exprs(&keys)
        ))
    }
}
