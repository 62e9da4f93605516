//! Delta (Arrow) column types as Synapse serverless SQL spells them in an `OPENROWSET … WITH`
//! clause.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// Bytes of a text column: gold holds names, codes, ids and hashes, never free text. A value
/// longer than this would be truncated by serverless, so the longest column in gold (a
/// 64-character hex hash) is far inside it.
pub const VARCHAR_BYTES: u32 = 256;

/// The collation serverless needs to read Parquet strings as UTF-8 and to push string
/// predicates down to the files.
pub const UTF8_COLLATION: &str = "Latin1_General_100_BIN2_UTF8";

/// The T-SQL type of a column of `data_type`, or why serverless cannot read it.
///
/// ```
/// use datafusion::arrow::datatypes::{DataType, TimeUnit};
/// use patientflow_sql::synapse::sql_type;
///
/// assert_eq!(sql_type(&DataType::Int64).unwrap(), "bigint");
/// assert_eq!(
///     sql_type(&DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))).unwrap(),
///     "datetime2(6)"
/// );
/// ```
pub fn sql_type(data_type: &DataType) -> Result<String, String> {
    Ok(match data_type {
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int16 => "smallint".into(),
        // T-SQL's tinyint is unsigned; Delta's byte is signed.
        DataType::Int8 => "smallint".into(),
        DataType::Float64 => "float".into(),
        DataType::Float32 => "real".into(),
        DataType::Boolean => "bit".into(),
        DataType::Date32 => "date".into(),
        DataType::Decimal128(p, s) if *p <= 38 => format!("decimal({p},{s})"),
        // Delta's `timestamp` is microseconds, adjusted to UTC.
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "datetime2(6)".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            format!("varchar({VARCHAR_BYTES}) COLLATE {UTF8_COLLATION}")
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "varbinary(8000)".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            return Err(
                "`timestamp_ntz` needs the timestampNtz table feature, which serverless does not read"
                    .into(),
            );
        }
        other => return Err(format!("type {other} has no serverless mapping")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(t: DataType) -> String {
        sql_type(&t).unwrap()
    }

    #[test]
    fn int64_is_bigint() {
        assert_eq!(mapped(DataType::Int64), "bigint");
    }

    #[test]
    fn int32_is_int() {
        assert_eq!(mapped(DataType::Int32), "int");
    }

    #[test]
    fn small_integers_are_smallint() {
        assert_eq!(mapped(DataType::Int16), "smallint");
        assert_eq!(mapped(DataType::Int8), "smallint");
    }

    #[test]
    fn double_is_float_and_float_is_real() {
        assert_eq!(mapped(DataType::Float64), "float");
        assert_eq!(mapped(DataType::Float32), "real");
    }

    #[test]
    fn boolean_is_bit() {
        assert_eq!(mapped(DataType::Boolean), "bit");
    }

    #[test]
    fn date_is_date() {
        assert_eq!(mapped(DataType::Date32), "date");
    }

    #[test]
    fn utc_timestamp_is_datetime2_6() {
        let t = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(mapped(t), "datetime2(6)");
    }

    #[test]
    fn strings_are_utf8_varchar() {
        for t in [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View] {
            assert_eq!(
                mapped(t),
                "varchar(256) COLLATE Latin1_General_100_BIN2_UTF8"
            );
        }
    }

    #[test]
    fn decimals_keep_precision_and_scale() {
        assert_eq!(mapped(DataType::Decimal128(10, 2)), "decimal(10,2)");
    }

    #[test]
    fn binary_is_varbinary() {
        assert_eq!(mapped(DataType::Binary), "varbinary(8000)");
    }

    #[test]
    fn types_serverless_cannot_read_are_refused_with_the_reason() {
        let ntz = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert!(sql_type(&ntz).unwrap_err().contains("timestampNtz"));
        let list = DataType::List(std::sync::Arc::new(
            datafusion::arrow::datatypes::Field::new("item", DataType::Int32, true),
        ));
        assert!(
            sql_type(&list)
                .unwrap_err()
                .contains("no serverless mapping")
        );
    }
}
