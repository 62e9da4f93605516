//! How fresh gold is: the newest receipt and event times among the records gold has consumed,
//! the time its figures are computed as of, and when gold last committed. Read from the Delta
//! logs only (silver's per-file statistics, gold's application transactions), so a dashboard
//! can ask every few seconds. The newest event time is silver's, which every refresh copies
//! from the silver snapshot it consumed.

use deltalake::arrow::array::{Array, Int64Array, TimestampMicrosecondArray};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::storage::{TableRoot, txn_version};
use crate::tables::{FACT_CENSUS_HOURLY, GOLD_APP, SILVER_EVENTS};

use super::{AS_OF_APP, EVENTS_APP};

/// The freshness of the gold tables under a root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Freshness {
    /// Receipt time (UTC microseconds) of the newest record visible in gold.
    pub data_as_of: Option<i64>,
    /// The newest event time (UTC microseconds) among the records visible in gold: an ADT
    /// event's time or a flat record's admission, not a time silver corrected (a future time set
    /// to its receipt). Well before `census_as_of`, gold is catching up: records of the past
    /// arriving now (a backlog, a replay) leave its figures "now" without the events since.
    pub events_as_of: Option<i64>,
    /// The time gold's census and open stays are computed as of (UTC microseconds).
    pub census_as_of: Option<i64>,
    /// When gold last committed (UTC microseconds).
    pub refreshed_at: Option<i64>,
}

/// Reads the freshness of gold under `root`.
pub async fn freshness(root: &TableRoot) -> Result<Freshness> {
    let gold = root.open(FACT_CENSUS_HOURLY).await?;
    let Some(version) = gold.version() else {
        return Ok(Freshness::default());
    };
    let refreshed_at = gold
        .snapshot()
        .map_err(|e| Error::delta(FACT_CENSUS_HOURLY, e))?
        .version_timestamp(version)
        .map(|ms| ms * 1000);
    let (consumed, census_as_of, events_as_of) = futures::try_join!(
        txn_version(&gold, FACT_CENSUS_HOURLY, GOLD_APP),
        txn_version(&gold, FACT_CENSUS_HOURLY, AS_OF_APP),
        txn_version(&gold, FACT_CENSUS_HOURLY, EVENTS_APP)
    )?;
    let consumed = consumed.unwrap_or(0);
    let mut freshness = Freshness {
        refreshed_at,
        census_as_of,
        events_as_of,
        data_as_of: None,
    };
    let silver = root.open(SILVER_EVENTS).await?;
    if silver.version().is_none() {
        return Ok(freshness);
    }
    let files = silver
        .snapshot()
        .map_err(|e| Error::delta(SILVER_EVENTS, e))?
        .add_actions_table(true)
        .map_err(|e| Error::delta(SILVER_EVENTS, e))?;
    let seqs = files
        .column_by_name("max.bronze_seq")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>());
    let received = files
        .column_by_name("max.received_at")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
    freshness.data_as_of = match (seqs, received) {
        (Some(seqs), Some(received)) => (0..files.num_rows())
            .filter(|i| seqs.is_valid(*i) && seqs.value(*i) <= consumed && received.is_valid(*i))
            .map(|i| received.value(i))
            .max(),
        _ => None,
    };
    Ok(freshness)
}
