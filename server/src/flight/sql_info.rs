//! `GetSqlInfo` and `GetXdbcTypeInfo`: what the server is and which types it has, every entry
//! of the Flight SQL spec filled in (Tableau and the JDBC driver fail on missing ones).

use std::collections::HashMap;

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, XdbcDataType};

/// Keywords beyond SQL-92 that DataFusion's dialect reserves.
const KEYWORDS: &[&str] = &[
    "EXPLAIN", "ANALYZE", "VERBOSE", "SHOW", "DESCRIBE", "UNNEST", "QUALIFY",
];
const NUMERIC: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "cos", "degrees", "exp", "floor", "ln",
    "log", "log10", "log2", "mod", "pi", "power", "radians", "random", "round", "signum", "sin",
    "sqrt", "tan", "trunc",
];
const STRING: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "replace",
    "repeat",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "to_hex",
    "translate",
    "trim",
    "upper",
];
const SYSTEM: &[&str] = &["arrow_typeof", "version"];
const DATETIME: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "extract",
    "now",
    "to_timestamp",
    "to_date",
    "make_date",
];

/// Bit set of enum positions, the way Flight SQL encodes "supported" lists.
fn bits(positions: &[i32]) -> i32 {
    positions.iter().fold(0, |acc, p| acc | (1 << p))
}

pub(crate) fn sql_info(timeout_secs: i32) -> Result<SqlInfoData, FlightError> {
    use SqlInfo as I;
    let mut b = SqlInfoDataBuilder::new();
    b.append(I::FlightSqlServerName, "patientflow");
    b.append(I::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(I::FlightSqlServerArrowVersion, "1.3");
    b.append(I::FlightSqlServerReadOnly, true);
    b.append(I::FlightSqlServerSql, true);
    b.append(I::FlightSqlServerSubstrait, false);
    b.append(I::FlightSqlServerSubstraitMinVersion, "");
    b.append(I::FlightSqlServerSubstraitMaxVersion, "");
    b.append(I::FlightSqlServerTransaction, 0i32); // none
    b.append(I::FlightSqlServerCancel, false);
    b.append(I::FlightSqlServerBulkIngestion, false);
    b.append(I::FlightSqlServerIngestTransactionsSupported, false);
    b.append(I::FlightSqlServerStatementTimeout, timeout_secs);
    b.append(I::FlightSqlServerTransactionTimeout, 0i32);
    b.append(I::SqlDdlCatalog, false);
    b.append(I::SqlDdlSchema, false);
    b.append(I::SqlDdlTable, false);
    b.append(I::SqlIdentifierCase, 3i32); // unquoted identifiers fold to lower case
    b.append(I::SqlIdentifierQuoteChar, "\"");
    b.append(I::SqlQuotedIdentifierCase, 0i32); // quoted: as written (case sensitive)
    b.append(I::SqlAllTablesAreSelectable, true);
    b.append(I::SqlNullOrdering, 0i32); // NULLs sort high
    b.append(I::SqlKeywords, KEYWORDS);
    b.append(I::SqlNumericFunctions, NUMERIC);
    b.append(I::SqlStringFunctions, STRING);
    b.append(I::SqlSystemFunctions, SYSTEM);
    b.append(I::SqlDatetimeFunctions, DATETIME);
    b.append(I::SqlSearchStringEscape, "\\");
    b.append(I::SqlExtraNameCharacters, "");
    b.append(I::SqlSupportsColumnAliasing, true);
    b.append(I::SqlNullPlusNullIsNull, true);
    b.append(I::SqlSupportsConvert, HashMap::<i32, Vec<i32>>::new());
    b.append(I::SqlSupportsTableCorrelationNames, true);
    b.append(I::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(I::SqlSupportsExpressionsInOrderBy, true);
    b.append(I::SqlSupportsOrderByUnrelated, true);
    b.append(I::SqlSupportedGroupBy, bits(&[0, 1])); // unrelated, beyond select
    b.append(I::SqlSupportsLikeEscapeClause, true);
    b.append(I::SqlSupportsNonNullableColumns, true);
    b.append(I::SqlSupportedGrammar, bits(&[0, 1])); // minimum, core
    b.append(I::SqlAnsi92SupportedLevel, bits(&[0])); // entry
    b.append(I::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(I::SqlOuterJoinsSupportLevel, 2i32); // full outer joins
    b.append(I::SqlSchemaTerm, "schema");
    b.append(I::SqlProcedureTerm, "procedure");
    b.append(I::SqlCatalogTerm, "catalog");
    b.append(I::SqlCatalogAtStart, true);
    b.append(I::SqlSchemasSupportedActions, 0i32);
    b.append(I::SqlCatalogsSupportedActions, 0i32);
    b.append(I::SqlSupportedPositionedCommands, 0i32);
    b.append(I::SqlSelectForUpdateSupported, false);
    b.append(I::SqlStoredProceduresSupported, false);
    b.append(I::SqlSupportedSubqueries, bits(&[0, 1, 2, 3])); // comparisons, EXISTS, IN, quantified
    b.append(I::SqlCorrelatedSubqueriesSupported, true);
    b.append(I::SqlSupportedUnions, bits(&[0, 1])); // UNION, UNION ALL
    for limit in [
        I::SqlMaxBinaryLiteralLength,
        I::SqlMaxCharLiteralLength,
        I::SqlMaxColumnNameLength,
        I::SqlMaxColumnsInGroupBy,
        I::SqlMaxColumnsInIndex,
        I::SqlMaxColumnsInOrderBy,
        I::SqlMaxColumnsInSelect,
        I::SqlMaxColumnsInTable,
        I::SqlMaxConnections,
        I::SqlMaxCursorNameLength,
        I::SqlMaxIndexLength,
        I::SqlDbSchemaNameLength,
        I::SqlMaxProcedureNameLength,
        I::SqlMaxCatalogNameLength,
        I::SqlMaxRowSize,
        I::SqlMaxStatementLength,
        I::SqlMaxStatements,
        I::SqlMaxTableNameLength,
        I::SqlMaxTablesInSelect,
        I::SqlMaxUsernameLength,
    ] {
        b.append(limit, 0i64); // no fixed limit
    }
    b.append(I::SqlMaxRowSizeIncludesBlobs, true);
    b.append(I::SqlDefaultTransactionIsolation, 0i32);
    b.append(I::SqlTransactionsSupported, false);
    b.append(I::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(I::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(I::SqlDataDefinitionsInTransactionsIgnored, true);
    b.append(I::SqlSupportedResultSetTypes, bits(&[1])); // forward only
    b.append(
        I::SqlSupportedConcurrenciesForResultSetUnspecified,
        bits(&[1]),
    ); // read only
    b.append(
        I::SqlSupportedConcurrenciesForResultSetForwardOnly,
        bits(&[1]),
    );
    b.append(
        I::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        0i32,
    );
    b.append(
        I::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
        0i32,
    );
    b.append(I::SqlBatchUpdatesSupported, false);
    b.append(I::SqlSavepointsSupported, false);
    b.append(I::SqlNamedParametersSupported, false);
    b.append(I::SqlLocatorsUpdateCopy, false);
    b.append(I::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build()
}

/// The SQL types of the gold tables, for `GetXdbcTypeInfo`.
pub(crate) fn xdbc_types() -> Result<XdbcTypeInfoData, FlightError> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let types = [
        ("BOOLEAN", XdbcDataType::XdbcBit, None, 1),
        ("INTEGER", XdbcDataType::XdbcInteger, None, 32),
        ("BIGINT", XdbcDataType::XdbcBigint, None, 64),
        ("DOUBLE", XdbcDataType::XdbcDouble, None, 53),
        ("VARCHAR", XdbcDataType::XdbcVarchar, Some("'"), i32::MAX),
        ("DATE", XdbcDataType::XdbcDate, Some("DATE '"), 10),
        (
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            Some("TIMESTAMP '"),
            26,
        ),
    ];
    for (name, data_type, prefix, size) in types {
        b.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type,
            column_size: Some(size),
            literal_prefix: prefix.map(String::from),
            literal_suffix: prefix.map(|_| "'".to_string()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: name == "VARCHAR",
            searchable: Searchable::Full,
            unsigned_attribute: Some(false),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some(name.into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: data_type,
            datetime_subcode: None,
            num_prec_radix: matches!(name, "INTEGER" | "BIGINT" | "DOUBLE").then_some(2),
            interval_precision: None,
        });
    }
    b.build()
}
