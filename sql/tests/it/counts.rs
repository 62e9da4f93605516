//! Every query is counted once for `/metrics`, whichever way it is answered or refused:
//! run, taken from the cache (as Flight SQL's GetFlightInfo asks first), or refused while
//! planning (as GetFlightInfo and prepared statements plan before they run).

use std::sync::atomic::Ordering;

use patientflow_sql::sql_key;

use crate::fixture::{admin, load};

const COUNT: &str = "SELECT count(*) FROM gold.fact_admission";

#[tokio::test]
async fn answers_hits_and_refusals_are_each_counted_once() {
    let fixture = load("small_network").await;
    let session = fixture.engine.session(admin(), "test").unwrap();
    let stats = fixture.engine.stats();
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);

    assert!(session.cached(&sql_key(COUNT)).await.is_none());
    let ran = session.sql(COUNT).await.unwrap();
    assert!(!ran.cached);
    let hit = session.cached(&sql_key(COUNT)).await.unwrap();
    assert!(hit.cached);
    assert_eq!(hit.rows(), ran.rows());
    assert_eq!((count(&stats.queries), count(&stats.cache_hits)), (2, 1));

    assert!(
        session
            .plan_sql("DELETE FROM gold.fact_admission")
            .await
            .is_err()
    );
    assert!(
        session
            .plan_sql("SELECT nope FROM gold.fact_admission")
            .await
            .is_err()
    );
    assert!(session.plan_sql(COUNT).await.is_ok());
    assert_eq!((count(&stats.queries), count(&stats.failures)), (4, 2));
}
