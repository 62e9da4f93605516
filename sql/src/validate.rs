//! The SQL front door: client SQL is parsed (DataFusion's sqlparser) and only one read-only
//! statement runs.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr, Statement, Value, visit_expressions_mut};

use crate::error::{Error, Result};

/// Parses `sql` and checks that it is exactly one read-only statement: SELECT, WITH, EXPLAIN
/// (of a read-only statement), SHOW or DESCRIBE.
pub fn read_only(sql: &str) -> Result<()> {
    parse_read_only(sql).map(|_| ())
}

/// [`read_only`], returning the parsed statement with JDBC/ODBC-style `?` parameters numbered
/// `$1`, `$2`, … in order of appearance (the form DataFusion binds).
pub(crate) fn parse_read_only(sql: &str) -> Result<DfStatement> {
    let mut statements = DFParser::parse_sql(sql).map_err(|e| Error::Syntax(e.to_string()))?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(s), true) => s,
        (None, _) => return Err(Error::Syntax("no statement".into())),
        (Some(_), false) => {
            return Err(Error::Syntax(
                "one statement at a time, please (found several separated by `;`)".into(),
            ));
        }
    };
    match &statement {
        DfStatement::Statement(s) => check(s)?,
        DfStatement::Explain(explain) => match explain.statement.as_ref() {
            DfStatement::Statement(s) => check(s)?,
            other => refuse(&other.to_string())?,
        },
        other => refuse(&other.to_string())?,
    }
    Ok(number_parameters(statement))
}

/// Numbers `?` placeholders `$1`, `$2`, … in the order they appear.
fn number_parameters(mut statement: DfStatement) -> DfStatement {
    let mut n = 0;
    let mut number = |s: &mut Statement| {
        let _ = visit_expressions_mut(s, |e: &mut Expr| {
            if let Expr::Value(v) = e
                && let Value::Placeholder(p) = &mut v.value
                && p == "?"
            {
                n += 1;
                *p = format!("${n}");
            }
            ControlFlow::<()>::Continue(())
        });
    };
    match &mut statement {
        DfStatement::Statement(s) => number(s),
        DfStatement::Explain(explain) => {
            if let DfStatement::Statement(s) = explain.statement.as_mut() {
                number(s);
            }
        }
        _ => {}
    }
    statement
}

fn check(statement: &Statement) -> Result<()> {
    match statement {
        Statement::Query(_)
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ExplainTable { .. } => Ok(()),
        Statement::Explain { statement, .. } => check(statement),
        other => refuse(&other.to_string()),
    }
}

/// The error for a statement that is not read-only, named by its leading keywords.
fn refuse(text: &str) -> Result<()> {
    // Statements whose object kind matters: CREATE TABLE vs CREATE VIEW.
    const TWO_WORDS: [&str; 3] = ["CREATE", "DROP", "ALTER"];
    let words: Vec<String> = text
        .split_whitespace()
        .take(2)
        .map(str::to_ascii_uppercase)
        .collect();
    let statement = match words.as_slice() {
        [first, second] if TWO_WORDS.contains(&first.as_str()) => {
            format!("{first} {second}")
        }
        [first, ..] => first.clone(),
        [] => "empty".into(),
    };
    Err(Error::NotReadOnly { statement })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass() {
        for sql in [
            "SELECT 1",
            "select * from gold.fact_admission where hospital_id = 3",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "SHOW COLUMNS FROM gold.dim_date",
            "DESCRIBE gold.dim_date",
            "SELECT 1 UNION ALL SELECT 2",
        ] {
            read_only(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn writes_are_refused_by_name() {
        for (sql, name) in [
            ("INSERT INTO gold.dim_date VALUES (1)", "INSERT"),
            ("DELETE FROM gold.dim_date", "DELETE"),
            ("UPDATE gold.dim_date SET year = 1", "UPDATE"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL",
            ),
            ("DROP TABLE gold.dim_date", "DROP TABLE"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("EXPLAIN INSERT INTO gold.dim_date VALUES (1)", "INSERT"),
        ] {
            let err = read_only(sql).unwrap_err();
            assert!(
                matches!(&err, Error::NotReadOnly { statement } if statement == name),
                "{sql}: {err}"
            );
            assert!(err.to_string().contains("only read-only statements run"));
        }
    }

    #[test]
    fn question_marks_become_numbered_parameters() {
        let s = parse_read_only("SELECT * FROM t WHERE a = ? AND b IN (?, $9)").unwrap();
        assert_eq!(
            s.to_string(),
            "SELECT * FROM t WHERE a = $1 AND b IN ($2, $9)"
        );
    }

    #[test]
    fn not_one_statement_is_a_syntax_error() {
        assert!(matches!(
            read_only("SELECT 1; DROP TABLE x"),
            Err(Error::Syntax(_))
        ));
        assert!(matches!(read_only(""), Err(Error::Syntax(_))));
        assert!(matches!(read_only("SELEC 1"), Err(Error::Syntax(_))));
    }
}
