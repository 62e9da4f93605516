//! The rows of the patients a refresh did not rebuild, carried over into the tables it
//! rewrites, in the schema the rebuilt rows have.

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use deltalake::arrow::array::Int32Array;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::{Expr, col, lit};

use super::history::{History, Observation};
use super::{month_key, patients, stays};
use crate::error::{Error, Result};
use crate::storage::{Keys, WriteMode, column, scan_keyed};

/// The month partitions that the rows of the rebuilt patients occupy in a gold table, found
/// without reading it: the rows were built from the records that table had consumed, so
/// rebuilding from those records gives their months back (a stay's admission month, an
/// encounter's arrival month and a patient's first month depend on nothing else).
#[derive(Debug, Default)]
pub(super) struct Held {
    /// `fact_admission` and `fact_stay_segment`: `admission_month`.
    pub(super) admission: BTreeSet<i32>,
    /// `fact_ed_visit`: `arrival_month`.
    pub(super) arrival: BTreeSet<i32>,
    /// `dim_patient`: `first_seen_month`.
    pub(super) first_seen: BTreeSet<i32>,
}

impl Held {
    /// The months of the rows built from `history`'s records up to the event and EHR bronze
    /// sequences `seq` and `ehr`.
    pub(super) fn up_to(history: &History, seq: i64, ehr: i64) -> Self {
        let mut held = Self::default();
        for (patient_id, observations) in history {
            let consumed: Vec<Observation> = observations
                .iter()
                .filter(|o| o.received.0 <= if o.from_ehr { ehr } else { seq })
                .cloned()
                .collect();
            if consumed.is_empty() {
                continue;
            }
            let rebuilt = stays::stays(patient_id, &consumed);
            held.admission
                .extend(rebuilt.stays.iter().map(|s| month_key(s.admission_time)));
            held.arrival
                .extend(rebuilt.ed_visits.iter().map(|v| month_key(v.arrival_time)));
            held.first_seen
                .extend(patients::first_seen_month(&patients::versions(
                    patient_id, &consumed,
                )));
        }
        held
    }
}

/// The rows of `table` matching `filter` and `keys`, in the schema of `like`.
async fn kept_rows_where(
    table: &DeltaTable,
    name: &str,
    filter: Expr,
    keys: Keys<'_>,
    like: &RecordBatch,
) -> Result<Vec<RecordBatch>> {
    let Ok(snapshot) = table.snapshot() else {
        return Ok(vec![]);
    };
    let existing: Vec<String> = snapshot
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect();
    let columns: Vec<&str> = existing.iter().map(String::as_str).collect();
    let batches = scan_keyed(table, name, &columns, filter, Some(keys), &[]).await?;
    batches.iter().map(|b| conform(b, like, name)).collect()
}

/// `batch` with the columns and types of `like` (missing columns as NULL).
fn conform(batch: &RecordBatch, like: &RecordBatch, name: &str) -> Result<RecordBatch> {
    let columns = like
        .schema()
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => deltalake::arrow::compute::cast(c, f.data_type()),
            None => Ok(deltalake::arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow(name, e))?;
    RecordBatch::try_new(like.schema(), columns).map_err(|e| Error::arrow(name, e))
}

/// The rows and write of a month-partitioned, patient-keyed table (`month` column) when only
/// the patients `ids` were rebuilt into `rebuilt`: the months their rows fell in before
/// (`held`) and fall in now are replaced, with the other patients' rows of those months
/// carried over. The other months' files are not touched.
pub(super) async fn replace_months(
    table: &DeltaTable,
    name: &str,
    month: &str,
    ids: &BTreeSet<String>,
    held: &BTreeSet<i32>,
    rebuilt: RecordBatch,
) -> Result<(Vec<RecordBatch>, WriteMode)> {
    let mut months = held.clone();
    months.extend(
        column::<Int32Array>(&rebuilt, name, month)?
            .iter()
            .flatten(),
    );
    if months.is_empty() {
        // Nothing to replace: an empty append still records what the table holds.
        return Ok((vec![rebuilt], WriteMode::Append));
    }
    let in_months = col(month).in_list(months.iter().map(|m| lit(*m)).collect(), false);
    let others = Keys {
        column: "patient_id",
        values: ids,
        keep: false,
    };
    let kept = kept_rows_where(table, name, in_months.clone(), others, &rebuilt).await?;
    Ok((
        std::iter::once(rebuilt).chain(kept).collect(),
        WriteMode::Replace(in_months),
    ))
}
