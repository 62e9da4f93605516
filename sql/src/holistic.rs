//! One aggregation stage for median and percentiles.
//!
//! DataFusion plans every grouped aggregate over several partitions in two stages: a partial
//! aggregate per partition, a repartition of the partial states, and a final aggregate that
//! merges them. That pays when a state is small (a sum, a count). `median` and
//! `percentile_cont` are holistic: their state is every value, so the partial stage copies
//! each value into its group and then into a list, the repartition copies the lists, and the
//! final stage copies them into its groups again — four copies of the column to save nothing
//! (a quarter of the ED-wait KPI's CPU at 1M stays went to the last three).
//!
//! [`HolisticAggregates`] replaces such a pair by one aggregate over the input rows
//! repartitioned by their group keys: the scan, the filters and the aggregation still run in
//! parallel, and each value is copied twice (into its partition, into its group) instead of
//! four times.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

/// Aggregate functions whose state is every input value.
const HOLISTIC: &[&str] = &["median", "percentile_cont"];

/// Plans a grouped aggregate with a holistic function (median, `percentile_cont`) in one
/// stage instead of partial + final; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct HolisticAggregates;

impl PhysicalOptimizerRule for HolisticAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| match single_stage(&node)? {
            Some(single) => Ok(Transformed::yes(single)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "holistic_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `Final(exchange(Partial(input)))` with a holistic aggregate → `SinglePartitioned` over
/// `input` repartitioned by the group keys (or `Single` over the merged input when there is
/// no key or one partition).
fn single_stage(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(last) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    if !matches!(
        last.mode(),
        AggregateMode::Final | AggregateMode::FinalPartitioned
    ) {
        return Ok(None);
    }
    let exchange = last.input();
    if !(exchange.is::<RepartitionExec>() || exchange.is::<CoalescePartitionsExec>()) {
        return Ok(None);
    }
    let Some(partial) = exchange.children()[0].downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let holistic = partial
        .aggr_expr()
        .iter()
        .any(|a| HOLISTIC.contains(&a.fun().name()));
    // Repartitioning by key would undo a sort an order-sensitive aggregate beside the median
    // needs (`array_agg(x ORDER BY y)`), and grouping sets are keyed by more than the rows.
    let ordered = partial
        .required_input_ordering()
        .iter()
        .any(Option::is_some);
    if *partial.mode() != AggregateMode::Partial
        || !holistic
        || ordered
        || partial.group_expr().has_grouping_set()
    {
        return Ok(None);
    }
    let group_by = partial.group_expr();
    let input = Arc::clone(partial.input());
    let partitions = last.properties().output_partitioning().partition_count();
    let (mode, input): (_, Arc<dyn ExecutionPlan>) = if group_by.is_empty() || partitions == 1 {
        (
            AggregateMode::Single,
            Arc::new(CoalescePartitionsExec::new(input)),
        )
    } else {
        let by_group = Partitioning::Hash(group_by.input_exprs(), partitions);
        let exchange = RepartitionExec::try_new(input, by_group)?;
        (AggregateMode::SinglePartitioned, Arc::new(exchange))
    };
    let single = AggregateExec::try_new(
        mode,
        group_by.clone(),
        partial.aggr_expr().to_vec(),
        partial.filter_expr().to_vec(),
        input,
        partial.input_schema(),
    )?
    .with_limit_options(last.limit_options());
    Ok(Some(Arc::new(single)))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// Two partitions of (hospital, minutes): hospital h has minutes h, 2h, …, 10h.
    fn context(with_rule: bool) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("hospital", DataType::Int64, false),
            Field::new("minutes", DataType::Float64, true),
        ]));
        let part = |hospitals: std::ops::RangeInclusive<i64>| {
            let rows: Vec<(i64, f64)> = hospitals
                .flat_map(|h| (1..=10).map(move |k| (h, (h * k) as f64)))
                .collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
                ],
            )
            .unwrap();
            vec![batch]
        };
        let table = MemTable::try_new(Arc::clone(&schema), vec![part(1..=2), part(3..=4)]).unwrap();
        let mut state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_default_features();
        if with_rule {
            state = state.with_physical_optimizer_rule(Arc::new(HolisticAggregates));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("waits", Arc::new(table)).unwrap();
        ctx
    }

    /// The physical plan and the sorted result of `sql`.
    async fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let plan = displayable(plan.as_ref()).indent(false).to_string();
        let batches = df.collect().await.unwrap();
        (plan, pretty_format_batches(&batches).unwrap().to_string())
    }

    const PERCENTILES: &str = "SELECT hospital, median(minutes) AS p50, \
        round(percentile_cont(0.9) WITHIN GROUP (ORDER BY minutes), 3) AS p90, avg(minutes) AS mean \
        FROM waits GROUP BY hospital ORDER BY hospital";

    #[tokio::test]
    async fn a_median_by_key_is_one_stage_over_rows_partitioned_by_the_key() {
        let (plan, rows) = run(&context(true), PERCENTILES).await;
        assert!(
            plan.contains("AggregateExec: mode=SinglePartitioned, gby=[hospital@0 as hospital]"),
            "{plan}"
        );
        assert!(
            plan.contains("RepartitionExec: partitioning=Hash([hospital@0], 2)"),
            "{plan}"
        );
        assert!(!plan.contains("mode=Partial"), "{plan}");
        // Hand-computed: h × (5.5, 9.1, 5.5) for h × 1..=10.
        let expected = [
            "+----------+------+------+------+",
            "| hospital | p50  | p90  | mean |",
            "+----------+------+------+------+",
            "| 1        | 5.5  | 9.1  | 5.5  |",
            "| 2        | 11.0 | 18.2 | 11.0 |",
            "| 3        | 16.5 | 27.3 | 16.5 |",
            "| 4        | 22.0 | 36.4 | 22.0 |",
            "+----------+------+------+------+",
        ]
        .join("\n");
        assert_eq!(rows, expected);
        // And the same as DataFusion's two stages.
        let (two_stage, same) = run(&context(false), PERCENTILES).await;
        assert!(two_stage.contains("mode=Partial"), "{two_stage}");
        assert_eq!(same, rows);
    }

    #[tokio::test]
    async fn a_median_of_everything_is_one_stage_over_the_merged_input() {
        let sql = "SELECT median(minutes) AS p50, count(*) AS n FROM waits";
        let (plan, rows) = run(&context(true), sql).await;
        assert!(
            plan.contains("AggregateExec: mode=Single, gby=[]"),
            "{plan}"
        );
        assert!(plan.contains("CoalescePartitionsExec"), "{plan}");
        assert!(!plan.contains("mode=Partial"), "{plan}");
        assert_eq!(run(&context(false), sql).await.1, rows);
        // 40 values h × k: the 20th and 21st are 10 and 12.
        assert!(rows.contains("| 11.0 | 40 |"), "{rows}");
    }

    #[tokio::test]
    async fn a_percentile_alone_is_one_stage_too() {
        let sql = "SELECT hospital, percentile_cont(0.5) WITHIN GROUP (ORDER BY minutes) AS p50 \
            FROM waits GROUP BY hospital ORDER BY hospital";
        let (plan, rows) = run(&context(true), sql).await;
        assert!(plan.contains("mode=SinglePartitioned"), "{plan}");
        assert!(!plan.contains("mode=Partial"), "{plan}");
        assert_eq!(run(&context(false), sql).await.1, rows);
        assert!(rows.contains("| 4        | 22.0 |"), "{rows}");
    }

    #[tokio::test]
    async fn a_median_beside_an_ordered_aggregate_keeps_its_sort() {
        let sql = "SELECT hospital, median(minutes) AS p50, \
            array_agg(minutes ORDER BY minutes DESC) AS desc_minutes \
            FROM waits GROUP BY hospital ORDER BY hospital";
        let (plan, rows) = run(&context(true), sql).await;
        assert!(!plan.contains("mode=SinglePartitioned"), "{plan}");
        assert_eq!(run(&context(false), sql).await.1, rows);
        // Hospital h's minutes h × 10 … h × 1, in the order asked for.
        for sorted in [
            "| 1        | 5.5  | [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]",
            "| 4        | 22.0 | [40.0, 36.0, 32.0, 28.0, 24.0, 20.0, 16.0, 12.0, 8.0, 4.0]",
        ] {
            assert!(rows.contains(sorted), "{rows}");
        }
    }

    #[tokio::test]
    async fn sums_and_counts_keep_their_two_stages() {
        let sql = "SELECT hospital, sum(minutes), count(*) FROM waits GROUP BY hospital";
        let (plan, _) = run(&context(true), sql).await;
        assert!(plan.contains("mode=Partial"), "{plan}");
        assert!(plan.contains("mode=FinalPartitioned"), "{plan}");
    }
}
