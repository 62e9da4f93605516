//! How the catalog scans a Delta table: a plain Parquet table (reader protocol 1) as its files,
//! with exact statistics from their footers; a table with reader features through delta-rs.

use datafusion::arrow::array::{Array, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use std::sync::Arc;

use crate::fixture::{Fixture, answer, append, count, load};

async fn rows(fixture: &Fixture, sql: &str) -> String {
    let result = answer(fixture, sql).await;
    pretty_format_batches(&result.batches).unwrap().to_string()
}

#[tokio::test]
async fn extremes_and_counts_come_from_footers_and_agree_with_the_rows() {
    let fixture = load("small_network").await;
    let from_footers = "SELECT min(hour_start) AS lo, max(hour_start) AS hi, count(*) AS n \
                        FROM gold.fact_census_hourly";
    // Nothing is scanned: the answer is a constant from the files' statistics.
    let plan = rows(&fixture, &format!("EXPLAIN {from_footers}")).await;
    assert!(plan.contains("PlaceholderRowExec"), "{plan}");
    assert!(!plan.contains("DataSourceExec"), "{plan}");
    // A filter makes the statistics inexact, so the same numbers are computed from the rows.
    let from_rows = "SELECT min(hour_start) AS lo, max(hour_start) AS hi, count(*) AS n \
                     FROM gold.fact_census_hourly WHERE census >= 0";
    let expected = rows(&fixture, from_rows).await;
    assert_eq!(rows(&fixture, from_footers).await, expected);

    // A new commit's files join the statistics of the files already listed.
    append(&fixture.root, "small_network", "gold/fact_census_hourly").await;
    let total = "SELECT count(*) FROM gold.fact_census_hourly";
    let counted = "SELECT count(*) FROM gold.fact_census_hourly WHERE census >= 0";
    assert_eq!(count(&fixture, total).await, count(&fixture, counted).await);
    assert_eq!(
        rows(&fixture, from_footers).await,
        rows(&fixture, from_rows).await
    );
}

#[tokio::test]
async fn partition_values_are_those_of_each_file() {
    let fixture = load("small_network").await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("day", DataType::Int32, false),
        Field::new("month", DataType::Int32, false),
    ]));
    let days = [20260105, 20260210, 20260211, 20260320];
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(days.to_vec())) as Arc<dyn Array>,
            Arc::new(Int32Array::from_iter_values(days.iter().map(|d| d / 100))),
        ],
    )
    .unwrap();
    fixture
        .root
        .open("gold/fact_stay_segment")
        .await
        .unwrap()
        .write(vec![batch])
        .with_partition_columns(["month"])
        .await
        .unwrap();
    let table = "gold.fact_stay_segment";
    let mismatched = format!("SELECT count(*) FROM {table} WHERE month <> day / 100");
    assert_eq!(count(&fixture, &mismatched).await, 0);
    let by_month =
        format!("SELECT month, count(*) AS n FROM {table} GROUP BY month ORDER BY month");
    let expected = "\
+--------+---+
| month  | n |
+--------+---+
| 202601 | 1 |
| 202602 | 2 |
| 202603 | 1 |
+--------+---+";
    assert_eq!(rows(&fixture, &by_month).await, expected);
    // A filter on the partition column selects that month's file alone, and the statistics
    // an aggregate is answered from are that file's.
    let february = format!("SELECT max(day) FROM {table} WHERE month = 202602");
    let days = format!("EXPLAIN SELECT day FROM {table} WHERE month = 202602");
    let plan = rows(&fixture, &days).await;
    assert!(plan.contains("month=202602/"), "{plan}");
    assert!(
        !plan.contains("month=202601/") && !plan.contains("month=202603/"),
        "{plan}"
    );
    let max = answer(&fixture, &february).await;
    let max = max.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int32Array>()
        .unwrap()
        .value(0);
    assert_eq!(max, 20260211);
    let latest =
        format!("SELECT count(*) FROM {table} WHERE month = (SELECT max(month) FROM {table})");
    assert_eq!(count(&fixture, &latest).await, 1);
}

#[tokio::test]
async fn a_table_with_reader_features_is_read_by_delta_rs() {
    let fixture = load("small_network").await;
    let schema = Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec![Some("ICU"), None])) as Arc<dyn Array>],
    )
    .unwrap();
    fixture
        .root
        .open("gold/dim_department")
        .await
        .unwrap()
        .write(vec![batch])
        .with_configuration([("delta.enableDeletionVectors", Some("true"))])
        .await
        .unwrap();
    let sql = "SELECT count(*) AS n, count(name) AS named FROM gold.dim_department";
    let plan = rows(&fixture, &format!("EXPLAIN {sql}")).await;
    assert!(plan.contains("DeltaScan"), "{plan}");
    let expected = "\
+---+-------+
| n | named |
+---+-------+
| 2 | 1     |
+---+-------+";
    assert_eq!(rows(&fixture, sql).await, expected);
}

#[tokio::test]
async fn a_table_without_files_is_empty() {
    let fixture = load("small_network").await;
    let schema = Arc::new(Schema::new(vec![Field::new("day", DataType::Int32, false)]));
    fixture
        .root
        .open("gold/fact_stay_segment")
        .await
        .unwrap()
        .write(vec![RecordBatch::new_empty(schema)])
        .await
        .unwrap();
    let table = "gold.fact_stay_segment";
    assert_eq!(
        count(&fixture, &format!("SELECT count(*) FROM {table}")).await,
        0
    );
    let all = answer(&fixture, &format!("SELECT day FROM {table} WHERE day > 0")).await;
    assert_eq!(all.rows(), 0);
    assert_eq!(all.schema.field(0).name(), "day");
}
