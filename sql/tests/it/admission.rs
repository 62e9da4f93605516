//! Admission control seen through the engine: cached answers never queue, a query without a
//! slot waits and is refused only by a full queue or the queue timeout, and a query past its
//! share of the memory pool fails alone. (The queue's order between principals is tested
//! beside the controller, `engine/admission.rs`.) No assertion depends on timing: the slot
//! is held by the test itself.

use std::time::Duration;

use patientflow_sql::{AdmissionConfig, EngineConfig, Error, Refusal};

use crate::fixture::{Fixture, ask, load_with};

const QUERY: &str = "SELECT count(*) FROM gold.fact_admission";

async fn fixture(max_queued: usize, memory_limit: usize) -> Fixture {
    let config = EngineConfig {
        memory_limit,
        admission: AdmissionConfig {
            max_executing: 1,
            max_per_principal: 1,
            max_queued,
            queue_timeout: Duration::from_millis(100),
        },
        ..EngineConfig::default()
    };
    load_with("small_network", config).await
}

#[tokio::test]
async fn a_cached_answer_never_queues_and_an_uncached_one_waits_its_turn() {
    let fixture = fixture(8, 2 << 30).await;
    let first = ask(&fixture, QUERY).await.unwrap();
    assert!(!first.cached);

    // The only slot is taken (by a long query, as far as the engine knows).
    let admission = fixture.engine.admission();
    let slot = admission.admit("bulk extract").await.unwrap();
    assert_eq!(admission.executing(), 1);

    let again = ask(&fixture, QUERY).await.unwrap();
    assert!(again.cached, "the cache answers without a slot");
    assert_eq!(again.rows(), first.rows());

    let refused = ask(&fixture, "SELECT count(*) FROM gold.dim_patient")
        .await
        .unwrap_err();
    let Error::Overloaded {
        reason,
        retry_after,
        ..
    } = &refused
    else {
        panic!("expected a refusal, got {refused}");
    };
    assert_eq!(*reason, Refusal::QueueTimeout);
    assert!(retry_after.as_secs() >= 1);
    assert_eq!(refused.outcome(), "queue_timeout");
    assert!(
        refused
            .to_string()
            .contains("waited 0 s for one of 1 slots"),
        "{refused}"
    );
    assert_eq!(admission.waiting(), 0, "the refused query left the queue");

    // Once the slot is free, the same query runs.
    drop(slot);
    let answered = ask(&fixture, "SELECT count(*) FROM gold.dim_patient").await;
    assert_eq!(answered.unwrap().rows(), 1);
    let stats = admission.stats();
    assert_eq!(
        stats
            .queue_timeout
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let fixture = fixture(0, 2 << 30).await;
    let _slot = fixture
        .engine
        .admission()
        .admit("bulk extract")
        .await
        .unwrap();
    let refused = ask(&fixture, QUERY).await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Overloaded {
                reason: Refusal::QueueFull,
                ..
            }
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("serve.max_queued_queries"));
}

#[tokio::test]
async fn a_query_past_its_share_of_the_memory_pool_fails_alone() {
    // One slot, so the query's share is the whole (small) pool.
    let fixture = fixture(8, 4 << 20).await;
    // A hash join's build side cannot spill.
    let greedy = "SELECT count(*) FROM generate_series(1, 1000000) AS a(v) \
                  JOIN generate_series(1, 1000000) AS b(w) ON v = w";
    let failed = ask(&fixture, greedy).await.unwrap_err();
    assert!(
        matches!(&failed, Error::ResourcesExhausted(m) if m.contains("its share of the memory pool (4 MiB")),
        "expected resources exhausted, got {failed}"
    );
    // Its memory is returned as its tasks wind down.
    for _ in 0..500 {
        if fixture.engine.memory_reserved() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        fixture.engine.memory_reserved(),
        0,
        "its memory is returned"
    );
    // The next query is not affected.
    assert_eq!(ask(&fixture, QUERY).await.unwrap().rows(), 1);
}
