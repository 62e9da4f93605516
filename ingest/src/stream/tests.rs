use std::time::{Duration, Instant};

use super::*;
use crate::producer::{FileSink, Producer, Shape};
use crate::source::PositionLog;
use crate::source::follow::FollowLanding;
use crate::storage::txn_version;
use crate::tables::{FACT_ADMISSION, GOLD_APP, SILVER_APP, SILVER_EVENTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stopped_mid_flow_leaves_every_landed_batch_visible_in_gold() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let mut sink = FileSink::new(&landing, "events", 400).unwrap();
    let ledger = Producer::new(4_000, Shape::Adt)
        .with_seed(5)
        .run(&mut sink)
        .unwrap();
    let root = TableRoot::parse(dir.path().join("data").to_str().unwrap()).unwrap();
    let stream = Stream::new(root.clone())
        .with_max_records(400)
        .with_interval(Duration::from_millis(50))
        .with_gold(GoldRefresh::new(root.clone()));
    let (status, stop) = (stream.status(), stream.stop_handle());
    let log = PositionLog::new(root.clone(), tokio::runtime::Handle::current());
    let running = tokio::spawn(stream.run(Box::new(FollowLanding::new(&landing, log))));

    // Stopped as soon as the first batch is visible: the batches landed by then, one of them
    // perhaps still in gold, are all visible when the stream returns.
    let started = Instant::now();
    while status.snapshot().batches == 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "no batch");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.stop();
    let metrics = running.await.unwrap().unwrap();

    let seen = status.snapshot();
    assert!(metrics.batches >= 1);
    assert_eq!(seen.batches, metrics.batches);
    assert_eq!(seen.records, metrics.counts.records_in);
    assert_eq!(seen.freshness.count, metrics.counts.records_in);
    assert!(metrics.counts.records_in <= ledger.records_in);
    let silver = root.open(SILVER_EVENTS).await.unwrap();
    let admissions = root.open(FACT_ADMISSION).await.unwrap();
    let silver_seq = txn_version(&silver, SILVER_EVENTS, SILVER_APP)
        .await
        .unwrap();
    assert!(silver_seq.is_some());
    assert_eq!(
        txn_version(&admissions, FACT_ADMISSION, GOLD_APP)
            .await
            .unwrap(),
        silver_seq
    );
    // Every table the stream created, gold's staged ones too, checkpoints every 10 commits.
    assert_eq!(
        crate::maintenance::rarely_checkpointed(&root)
            .await
            .unwrap(),
        Vec::<&str>::new()
    );
}
