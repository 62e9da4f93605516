//! Snapshots of the plans the semantic layer generates (`cargo insta review` after a change).

use patientflow_semantic::{Grain, MetricQuery, compile};

use crate::fixture;

async fn plan(query: MetricQuery) -> String {
    let fixture = fixture::load("small_network").await;
    let engine = &fixture.engine;
    let df = compile(engine.model(), engine.context(), &query)
        .await
        .unwrap();
    df.logical_plan().display_indent().to_string()
}

#[tokio::test]
async fn occupancy_by_department_per_day() {
    insta::assert_snapshot!(
        plan(MetricQuery {
            metrics: vec!["occupancy_rate".into()],
            dimensions: vec!["department".into()],
            grain: Some(Grain::Day),
            ..MetricQuery::default()
        })
        .await
    );
}

#[tokio::test]
async fn census_point_with_filter() {
    insta::assert_snapshot!(
        plan(MetricQuery {
            metrics: vec!["census".into()],
            filters: [("hospital".to_string(), vec![serde_json::json!(1)])].into(),
            ..MetricQuery::default()
        })
        .await
    );
}

#[tokio::test]
async fn admissions_by_age_band_with_alos() {
    insta::assert_snapshot!(
        plan(MetricQuery {
            metrics: vec!["admissions".into(), "alos_hours".into()],
            dimensions: vec!["age_band".into()],
            ..MetricQuery::default()
        })
        .await
    );
}
