//! `date_trunc` with a fast path for UTC timestamps.
//!
//! Every gold timestamp is `Timestamp(µs, "UTC")`. DataFusion 55's `date_trunc` truncates hours
//! and days arithmetically only for timestamps without a time zone; with `"UTC"` it goes
//! through calendar arithmetic per value, which is most of the time of a per-day KPI. In UTC an
//! hour and a day have fixed lengths, so truncation is `t - t mod unit`. Everything else is
//! handed to DataFusion's own `date_trunc`.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// The `date_trunc` the semantic layer builds plans with and the engine registers for SQL.
pub fn date_trunc() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(UtcDateTrunc {
            inner: datafusion::functions::datetime::date_trunc(),
        }))
    });
    Arc::clone(&UDF)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

/// Microseconds in a unit of fixed length in UTC.
fn fixed_unit(unit: &str) -> Option<i64> {
    match unit.to_ascii_lowercase().as_str() {
        "microsecond" => Some(1),
        "millisecond" => Some(1_000),
        "second" => Some(1_000_000),
        "minute" => Some(60_000_000),
        "hour" => Some(3_600_000_000),
        "day" => Some(86_400_000_000),
        _ => None,
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn output_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let unit = match args.args.first() {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(u))
                | ScalarValue::Utf8View(Some(u))
                | ScalarValue::LargeUtf8(Some(u)),
            )) => fixed_unit(u),
            _ => None,
        };
        if let (Some(step), Some(ColumnarValue::Array(array))) = (unit, args.args.get(1))
            && let DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) = array.data_type()
            && matches!(tz.as_ref(), "UTC" | "+00:00" | "Z")
        {
            let values = array.as_primitive::<TimestampMicrosecondType>();
            let truncated: TimestampMicrosecondArray = values.unary(|t| t - t.rem_euclid(step));
            return Ok(ColumnarValue::Array(Arc::new(
                truncated.with_timezone(Arc::clone(tz)),
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{BinaryExpr, Expr, Operator, cast, col, lit};
    use datafusion::prelude::SessionContext;

    /// The fast path and DataFusion's own `date_trunc` agree, on both sides of the epoch.
    #[tokio::test]
    async fn agrees_with_datafusion() {
        let ctx = SessionContext::new();
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        for unit in [
            "microsecond",
            "second",
            "minute",
            "hour",
            "day",
            "week",
            "month",
        ] {
            let df = ctx
                .sql(
                    "SELECT * FROM (VALUES (TIMESTAMP '2026-11-24T09:15:02.123456'), \
                     (TIMESTAMP '1969-12-31T23:59:59.5'), (TIMESTAMP '2026-03-29T01:30:00')) t(x)",
                )
                .await
                .unwrap();
            let t = cast(col("x"), utc.clone());
            let fast = date_trunc().call(vec![lit(unit), t.clone()]);
            let slow = datafusion::functions::expr_fn::date_trunc(lit(unit), t);
            let differing = df
                .filter(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(fast),
                    Operator::IsDistinctFrom,
                    Box::new(slow),
                )))
                .unwrap()
                .count()
                .await
                .unwrap();
            assert_eq!(differing, 0, "{unit}");
        }
    }
}
