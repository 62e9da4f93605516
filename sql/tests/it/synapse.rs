//! `synapse plan` for the shipped model and policies over the shipped gold layout: a golden
//! snapshot, and the rules every batch follows.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use patientflow_ingest::tables::GOLD_SPECS;
use patientflow_semantic::Model;
use patientflow_sql::rbac::Policies;
use patientflow_sql::synapse::{Credential, LakeTable, Plan, Protocol, Target, plan};

fn shipped_tables() -> Vec<LakeTable> {
    GOLD_SPECS
        .iter()
        .map(|spec| LakeTable {
            name: spec.name.to_string(),
            schema: spec.schema(),
            protocol: Protocol {
                min_reader_version: 1,
                min_writer_version: 2,
                ..Protocol::default()
            },
        })
        .collect()
}

fn policies() -> Policies {
    Policies::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rbac-policies")).unwrap()
}

fn target() -> Target {
    Target {
        location: "https://contosolake.dfs.core.windows.net/lake/patientflow".into(),
        credential: Credential::ManagedIdentity,
    }
}

fn shipped_plan() -> Plan {
    plan(
        &shipped_tables(),
        &Model::built_in().unwrap(),
        &policies(),
        &target(),
    )
    .unwrap()
}

#[test]
fn the_shipped_model_and_policies_plan_as_the_snapshot() {
    insta::assert_snapshot!(shipped_plan().to_sql());
}

#[test]
fn every_batch_is_one_call_and_create_view_or_schema_stands_alone() {
    let plan = shipped_plan();
    for batch in &plan.batches {
        assert!(
            !batch.sql.lines().any(|l| l.trim() == "GO"),
            "{}",
            batch.name
        );
        if batch.sql.contains("CREATE OR ALTER VIEW") {
            assert!(
                batch.sql.starts_with("CREATE OR ALTER VIEW"),
                "{}",
                batch.name
            );
            assert_eq!(batch.sql.matches("CREATE OR ALTER VIEW").count(), 1);
        }
        if batch.name.starts_with("schema ") {
            assert!(batch.sql.contains("EXEC(N'CREATE SCHEMA"), "{}", batch.sql);
        }
    }
    let names: Vec<&str> = plan.batches.iter().map(|b| b.name.as_str()).collect();
    let position = |n: &str| names.iter().position(|x| *x == n).unwrap();
    // Storage before schemas before the views that need them; the cleanup last.
    assert!(position("credential patientflow_lake") < position("data source patientflow_lake"));
    assert!(position("schema gold") < position("view gold.fact_admission"));
    assert!(position("view gold.fact_admission") < position("view kpi.flow_daily"));
    assert_eq!(names.last(), Some(&"drop stale views"));
    for table in [
        "dim_department",
        "dim_patient",
        "dim_date",
        "fact_admission",
        "fact_stay_segment",
        "fact_census_hourly",
        "fact_ed_visit",
    ] {
        assert!(
            names.contains(&format!("view gold.{table}").as_str()),
            "{table}"
        );
    }
    for view in Model::built_in().unwrap().views.keys() {
        assert!(
            names.contains(&format!("view kpi.{view}").as_str()),
            "{view}: {:?}",
            plan.notes
        );
    }
}

#[test]
fn gold_views_type_every_column_in_the_file_s_case() {
    let plan = shipped_plan();
    let view = plan
        .batches
        .iter()
        .find(|b| b.name == "view gold.fact_admission")
        .unwrap();
    assert!(
        view.sql.contains("BULK 'gold/fact_admission/'"),
        "{}",
        view.sql
    );
    assert!(view.sql.contains("FORMAT = 'DELTA'"));
    assert!(
        view.sql.contains("[admission_time] datetime2(6)"),
        "{}",
        view.sql
    );
    assert!(view.sql.contains("[hospital_id] int"));
    assert!(
        view.sql
            .contains("[department] varchar(256) COLLATE Latin1_General_100_BIN2_UTF8")
    );
    assert!(!view.sql.contains("DATETRUNC"));
}

#[test]
fn the_clinician_group_gets_its_department_masked_and_granted() {
    let plan = shipped_plan();
    let schema = "department_clinician_h1_emergency";
    let view = plan
        .batches
        .iter()
        .find(|b| b.name == format!("view {schema}.fact_admission"))
        .unwrap();
    assert!(
        view.sql
            .contains("WHERE t.[hospital_id] = 1 AND t.[department] = N'Emergency'"),
        "{}",
        view.sql
    );
    assert!(
        view.sql.contains("HASHBYTES('SHA2_256', mk.[outer_pad]"),
        "{}",
        view.sql
    );
    assert!(
        !view.sql.contains("[bed_id]"),
        "hidden columns are left out"
    );
    let grant = plan
        .batches
        .iter()
        .find(|b| b.name.starts_with(&format!("grant {schema}")))
        .unwrap();
    assert!(grant.sql.contains(
        "FROM EXTERNAL PROVIDER WITH OBJECT_ID = '7f0c2f4e-1b9a-4d5e-9c3a-2e1d0b6a5f41'"
    ));
    assert!(
        grant
            .sql
            .contains(&format!("GRANT SELECT ON SCHEMA::[{schema}]"))
    );
    // The secret is a placeholder; the plan never holds it.
    assert!(plan.to_sql().contains("$(PATIENTFLOW_MASK_KEY_INNER)"));
}

#[test]
fn a_table_synapse_cannot_read_is_refused_with_what_to_do() {
    let mut tables = shipped_tables();
    tables[0].protocol = Protocol {
        min_reader_version: 3,
        min_writer_version: 7,
        reader_features: vec!["deletionVectors".into()],
        writer_features: vec!["deletionVectors".into()],
    };
    let err = plan(&tables, &Model::built_in().unwrap(), &policies(), &target()).unwrap_err();
    assert!(err.0.contains("deletionVectors"), "{err}");
    assert!(err.0.contains("reader version 1"), "{err}");
}

#[test]
fn a_new_attribute_column_alters_the_views_of_its_table_only() {
    let before = shipped_plan();
    let mut tables = shipped_tables();
    let patient = tables
        .iter_mut()
        .find(|t| t.name == "gold/dim_patient")
        .unwrap();
    let mut fields: Vec<Field> = patient
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("attr_preferred_language", DataType::Utf8, true));
    patient.schema = Arc::new(Schema::new(fields));
    let after = plan(&tables, &Model::built_in().unwrap(), &policies(), &target()).unwrap();
    let changes = after.diff(&before);
    let changed: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
    assert!(changed.contains(&"view gold.dim_patient"), "{changed:?}");
    assert!(changed.contains(&"external table patientflow_private.dim_patient"));
    assert!(
        changed.iter().all(|c| c.contains("dim_patient")),
        "{changed:?}"
    );
    assert!(changes.iter().all(|c| c.change == "changed"));
    let view = changes
        .iter()
        .find(|c| c.name == "view gold.dim_patient")
        .unwrap();
    assert!(view.sql.contains("[attr_preferred_language] varchar(256)"));
}
