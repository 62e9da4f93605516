//! How fresh gold is: the newest receipt time among the records gold has consumed, and when
//! gold last committed. Read from the Delta logs only (silver's per-file statistics), so a
//! dashboard can ask every few seconds.

use deltalake::arrow::array::{Array, Int64Array, TimestampMicrosecondArray};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::storage::{TableRoot, txn_version};
use crate::tables::{FACT_CENSUS_HOURLY, GOLD_APP, SILVER_EVENTS};

/// The freshness of the gold tables under a root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Freshness {
    /// Receipt time (UTC microseconds) of the newest record visible in gold.
    pub data_as_of: Option<i64>,
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
    let consumed = txn_version(&gold, FACT_CENSUS_HOURLY, GOLD_APP)
        .await?
        .unwrap_or(0);
    let silver = root.open(SILVER_EVENTS).await?;
    if silver.version().is_none() {
        return Ok(Freshness {
            data_as_of: None,
            refreshed_at,
        });
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
    let data_as_of = match (seqs, received) {
        (Some(seqs), Some(received)) => (0..files.num_rows())
            .filter(|i| seqs.is_valid(*i) && seqs.value(*i) <= consumed && received.is_valid(*i))
            .map(|i| received.value(i))
            .max(),
        _ => None,
    };
    Ok(Freshness {
        data_as_of,
        refreshed_at,
    })
}
