//! New Delta commits are visible to the next query, without a restart and with the result
//! cache off: the catalog checks for the next commit on every lookup.

use patientflow_sql::EngineConfig;

use crate::fixture::{append, count, load_with};

const COUNT: &str = "SELECT count(*) FROM gold.fact_admission";

#[tokio::test]
async fn a_new_commit_is_read_by_the_next_query() {
    let uncached = EngineConfig {
        cache_entries: 0,
        ..EngineConfig::default()
    };
    let fixture = load_with("small_network", uncached).await;
    let before = count(&fixture, COUNT).await;
    assert!(before > 0);
    // Unchanged: the same version, the same answer.
    assert_eq!(count(&fixture, COUNT).await, before);
    let first = fixture
        .engine
        .table_version("gold", "fact_admission")
        .await
        .unwrap()
        .unwrap();

    append(&fixture.root, "small_network", "gold/fact_admission").await;
    assert_eq!(count(&fixture, COUNT).await, 2 * before);
    let version = fixture.engine.table_version("gold", "fact_admission").await;
    assert_eq!(version.unwrap(), Some(first + 1));

    // Two commits at once: the lookup catches up over both.
    append(&fixture.root, "small_network", "gold/fact_admission").await;
    append(&fixture.root, "small_network", "gold/fact_admission").await;
    assert_eq!(count(&fixture, COUNT).await, 4 * before);
}
