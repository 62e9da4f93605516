//! Generated input at the query service's parsers: any statement text at the SQL front door
//! is answered or refused, never a panic and never a write; any JSON as a semantic query is
//! answered or refused; any text as a policy file is loaded or refused with its line, and
//! whatever loads grants without panicking. The number of cases per property is
//! `PROPTEST_CASES` (default 64; `.ci/run` keeps the default).

use std::path::Path;
use std::sync::Arc;

use patientflow_semantic::MetricQuery;
use patientflow_sql::rbac::{Access, Policies, Principal};
use proptest::prelude::*;

use crate::fixture::{Fixture, admin, load};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64)
}

/// SQL made of the words, names and punctuation a statement has, in any order, and sometimes
/// a real statement with a token changed: most are nonsense, some parse, a few run.
fn statement() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "SELECT",
            "FROM",
            "WHERE",
            "GROUP BY",
            "ORDER BY",
            "LIMIT",
            "WITH",
            "AS",
            "JOIN",
            "ON",
            "UNION ALL",
            "INSERT INTO",
            "UPDATE",
            "DELETE FROM",
            "DROP TABLE",
            "CREATE TABLE",
            "CREATE EXTERNAL TABLE",
            "COPY",
            "TO",
            "SET",
            "EXPLAIN",
            "SHOW TABLES",
            "DESCRIBE",
            "VALUES",
            "count(*)",
            "sum(",
            "avg(",
            "max(",
            "date_trunc('day',",
            "CAST(",
            "AS INT)",
            "patientflow_mask(",
            "generate_series(1, 3)",
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            "gold.fact_admission",
            "gold.dim_patient",
            "gold.fact_census_hourly",
            "kpi.occupancy_hourly",
            "kpi.flow_daily",
            "silver.patient_events",
            "ops.audit",
            "information_schema.tables",
            "patient_id",
            "department",
            "hospital_id",
            "admission_time",
            "census",
            "los_hours",
            "*",
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            ",", "(", ")", ";", "=", "<", "+", "'ICU'", "'", "\"", "1", "-1", "1e308", "NULL", "?",
            "$1", "--", "/*",
        ])
        .prop_map(String::from),
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_map(String::from),
        ".{0,6}".prop_map(String::from),
    ];
    let soup = prop::collection::vec(token, 0..16).prop_map(|t| t.join(" "));
    let edited = (
        prop_oneof![
            Just("SELECT department, count(*) FROM gold.fact_admission GROUP BY 1"),
            Just("SELECT * FROM kpi.occupancy_hourly ORDER BY period DESC LIMIT 5"),
            Just("WITH a AS (SELECT patient_id FROM gold.dim_patient) SELECT count(*) FROM a"),
            Just("EXPLAIN SELECT max(census) FROM gold.fact_census_hourly"),
        ],
        any::<prop::sample::Index>(),
        ".{0,8}",
    )
        .prop_map(|(sql, at, insert)| {
            let mut at = at.index(sql.len() + 1);
            while !sql.is_char_boundary(at) {
                at -= 1;
            }
            format!("{}{insert}{}", &sql[..at], &sql[at..])
        });
    prop_oneof![soup, edited]
}

/// The Delta version of every table the fixture has, to show nothing wrote.
async fn versions(fixture: &Fixture) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for table in [
        "fact_admission",
        "dim_patient",
        "fact_census_hourly",
        "fact_stay_segment",
    ] {
        out.push(fixture.engine.table_version("gold", table).await.unwrap());
    }
    out
}

#[test]
fn any_statement_is_answered_or_refused_and_nothing_is_written() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = runtime.block_on(load("small_network"));
    let before = runtime.block_on(versions(&fixture));
    let mut config = ProptestConfig::with_cases(cases());
    config.failure_persistence = None;
    let answered = std::cell::Cell::new(0);
    proptest!(config, |(sql in statement())| {
        let session = fixture.engine.session(admin(), "test").unwrap();
        // Ok or a typed error; a panic fails the property.
        if runtime.block_on(session.sql(&sql)).is_ok() {
            answered.set(answered.get() + 1);
        }
        prop_assert_eq!(&runtime.block_on(versions(&fixture)), &before);
    });
    // The generator reaches past the parser.
    assert!(answered.get() > 0, "no generated statement ran");
}

/// JSON shaped like a semantic query, with names real and not, and values of any kind.
fn metric_query() -> impl Strategy<Value = serde_json::Value> {
    let name = prop_oneof![
        Just("admissions"),
        Just("census"),
        Just("occupancy_rate_point"),
        Just("alos_hours"),
        Just("ed_waiting"),
        Just("hospital"),
        Just("department"),
        Just("period"),
        Just("age_band"),
        Just("gender"),
        Just("nope"),
        Just(""),
    ];
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,6}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("ICU")),
        Just(serde_json::Value::from(3)),
    ];
    let names = || prop::collection::vec(name.clone().prop_map(String::from), 0..4);
    (
        names(),
        names(),
        prop::collection::btree_map(
            name.clone().prop_map(String::from),
            prop::collection::vec(value, 0..3),
            0..3,
        ),
        prop_oneof![
            Just("hour"),
            Just("day"),
            Just("week"),
            Just("month"),
            Just("year")
        ],
        prop_oneof![
            Just("2026-11-01"),
            Just("2026-11-20T12:00:00Z"),
            Just("soon"),
            Just("2026-13-45")
        ],
        names(),
        prop::option::of(any::<u32>()),
        any::<u8>(),
    )
        .prop_map(
            |(metrics, dimensions, filters, grain, from, order, limit, drop)| {
                let mut q = serde_json::json!({
                    "metrics": metrics, "dimensions": dimensions, "filters": filters,
                    "grain": grain, "time_range": {"from": from}, "order": order, "limit": limit,
                });
                // Leave a member out now and then, or add one nobody knows.
                let keys = [
                    "metrics",
                    "dimensions",
                    "filters",
                    "grain",
                    "time_range",
                    "order",
                ];
                if let Some(key) = keys.get(drop as usize % 8) {
                    q.as_object_mut().unwrap().remove(*key);
                } else if drop % 8 == 7 {
                    q["unknown"] = serde_json::Value::from(true);
                }
                q
            },
        )
}

#[test]
fn any_semantic_query_json_is_answered_or_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = runtime.block_on(load("small_network"));
    let mut config = ProptestConfig::with_cases(cases());
    config.failure_persistence = None;
    proptest!(config, |(json in metric_query())| {
        let Ok(query) = serde_json::from_value::<MetricQuery>(json) else {
            return Ok(());
        };
        let session = fixture.engine.session(admin(), "test").unwrap();
        let _ = runtime.block_on(session.metric(&query));
    });
}

/// The shipped policy files, each with a line removed, duplicated or changed, or characters
/// inserted; and YAML built from policy-like members.
fn policy_text() -> impl Strategy<Value = String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rbac-policies");
    let mut shipped: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    shipped.sort();
    let edited = (
        prop::sample::select(shipped),
        any::<prop::sample::Index>(),
        0..4u8,
        ".{0,10}",
    )
        .prop_map(|(text, at, how, insert)| {
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            let i = at
                .index(lines.len().max(1))
                .min(lines.len().saturating_sub(1));
            match how {
                0 if !lines.is_empty() => drop(lines.remove(i)),
                1 if !lines.is_empty() => lines.insert(i, lines[i].clone()),
                2 if !lines.is_empty() => lines[i] = format!("{}{insert}", lines[i]),
                _ => lines.insert(i, insert),
            }
            lines.join("\n")
        });
    let built = (
        "[a-z_]{1,10}",
        prop_oneof![Just("network"), Just("hospital"), Just("department"), Just("planet")],
        prop_oneof![
            Just("PatientFlow.X.{hospital}.{department}"), Just("PatientFlow.{hospital}"),
            Just("{department}"), Just("{"), Just("PatientFlow.Admin"),
        ],
        prop::collection::vec(prop_oneof![Just("gold.*"), Just("kpi.*"), Just("silver.patient_events"), Just("*"), Just("nope.x")], 0..3),
        prop::collection::vec((prop_oneof![Just("patient_id"), Just("bed_id"), Just("age")], prop_oneof![Just("hash"), Just("hide"), Just("null"), Just("shout")]), 0..3),
    )
        .prop_map(|(name, scope, app_role, tables, masks)| {
            let masks: Vec<String> = masks.iter().map(|(c, m)| format!("      {c}: {m}")).collect();
            format!(
                "roles:\n  {name}:\n    app_role: \"{app_role}\"\n    scope: {scope}\n    tables: [{}]\n    masks:\n{}\n",
                tables.join(", "),
                masks.join("\n")
            )
        });
    prop_oneof![edited, built, ".{0,40}"]
}

#[test]
fn any_policy_text_loads_or_is_refused_with_its_line() {
    let mut config = ProptestConfig::with_cases(4 * cases());
    config.failure_persistence = None;
    proptest!(config, |(text in policy_text(), role in "PatientFlow\\.[A-Za-z.0-9]{0,24}")| {
        let mut policies = Policies::default();
        match policies.add(Path::new("generated.yaml"), &text) {
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                if let Some(line) = e.line {
                    // YAML breaks lines at `\n`, `\r\n` and a lone `\r`; the parser may point
                    // just past the last line.
                    let breaks = text.matches('\n').count() + text.matches('\r').count()
                        - text.matches("\r\n").count();
                    prop_assert!(line >= 1 && line <= breaks + 2, "line {} of {:?}", line, text);
                }
            }
            Ok(()) => {
                let access: Access = policies.access(Principal {
                    oid: "p".into(),
                    roles: vec![role],
                    ..Principal::default()
                });
                let _ = Arc::new(access);
            }
        }
    });
}
