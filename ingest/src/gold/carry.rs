//! The rows of the patients a refresh did not rebuild, carried over into the tables it
//! rewrites, in the schema the rebuilt rows have.

use std::collections::{BTreeMap, BTreeSet};

use deltalake::DeltaTable;
use deltalake::arrow::array::{BooleanArray, Int32Array, RecordBatch, StringArray};
use deltalake::arrow::compute::kernels::boolean::not;
use deltalake::arrow::compute::{concat_batches, filter_record_batch};
use deltalake::datafusion::prelude::{Expr, col, lit};

use super::GoldMetrics;
use super::census::Occupancy;
use super::changes::changed_months;
use super::departments::Departments;
use super::history::History;
use super::rebuild::rebuild;
use crate::error::{Error, Result};
use crate::storage::{WriteMode, column, conform, scan};

/// The rows the rebuilt patients have in the gold tables now, found without reading them:
/// the tables' rows are a function of the silver records they consumed and the as-of time
/// they were built at, so rebuilding from those records at that time gives them back (the
/// rows whose as-of dependence moved since — a planned discharge passed, a stay gone stale, an
/// emergency patient waiting — belong to patients rebuilt at every refresh that moved them).
#[derive(Debug)]
pub(super) struct Previous {
    /// The rows of each patient-keyed table, by table name.
    pub(super) rows: BTreeMap<&'static str, RecordBatch>,
    /// Their segments as the census reads them.
    pub(super) occupancies: Vec<Occupancy>,
}

impl Previous {
    /// The rows built from `history`'s records up to the event and EHR bronze sequences `seq`
    /// and `ehr`, as of `as_of`.
    pub(super) fn up_to(
        history: &History,
        (seq, ehr, as_of): (i64, i64, i64),
        departments: &Departments,
        tracked: &[String],
    ) -> Result<Self> {
        let consumed: History = history
            .iter()
            .filter_map(|(patient_id, observations)| {
                let kept: Vec<_> = observations
                    .iter()
                    .filter(|o| o.received.0 <= if o.from_ehr { ehr } else { seq })
                    .cloned()
                    .collect();
                (!kept.is_empty()).then(|| (patient_id.clone(), kept))
            })
            .collect();
        let mut rebuilt = rebuild(&consumed, departments, as_of, &mut GoldMetrics::default())?;
        let occupancies = std::mem::take(&mut rebuilt.segments.occupancies);
        Ok(Self {
            rows: rebuilt.finish(as_of, tracked)?.into_iter().collect(),
            occupancies,
        })
    }
}

/// The rows of `table` matching `filter`, in the schema of `like`.
async fn rows_where(
    table: &DeltaTable,
    name: &str,
    filter: Expr,
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
    let batches = scan(table, name, &columns, filter, &[]).await?;
    let none = Default::default();
    batches
        .iter()
        .map(|b| conform(b, &like.schema(), name, &none))
        .collect()
}

/// The rows and write of a month-partitioned, patient-keyed table (`month` column) when only
/// the patients `ids` were rebuilt into `rebuilt`, their rows having been `previous`. The
/// months where the rebuilt rows differ from the previous ones are replaced, with the other
/// patients' rows of those months carried over; every other month's files are not touched
/// (a batch of new events mostly changes its patients' latest stays, so most months of a long
/// history stay as they are, and only the changed ones are read).
pub(super) async fn replace_months(
    table: &DeltaTable,
    name: &str,
    month: &str,
    ids: &BTreeSet<String>,
    previous: &RecordBatch,
    rebuilt: RecordBatch,
) -> Result<(Vec<RecordBatch>, WriteMode)> {
    let changed = changed_months(name, month, &rebuilt, previous)?;
    let months = column::<Int32Array>(&rebuilt, name, month)?;
    let in_changed = mask(months.iter(), |m| changed.contains(&m));
    let written = filter(&rebuilt, &in_changed, name)?;
    if changed.is_empty() {
        // Nothing to replace: an empty append still records what the table holds.
        return Ok((vec![written], WriteMode::Append));
    }
    let in_list = col(month).in_list(changed.iter().map(|m| lit(*m)).collect(), false);
    let stored = rows_where(table, name, in_list.clone(), &rebuilt).await?;
    let stored = concat_batches(&rebuilt.schema(), &stored).map_err(|e| Error::arrow(name, e))?;
    let others = not(&patient_mask(&stored, name, ids)?).map_err(|e| Error::arrow(name, e))?;
    let kept = filter(&stored, &others, name)?;
    Ok((vec![written, kept], WriteMode::Replace(in_list)))
}

/// Which rows of `batch` belong to the patients `ids`.
fn patient_mask(batch: &RecordBatch, name: &str, ids: &BTreeSet<String>) -> Result<BooleanArray> {
    let patients = column::<StringArray>(batch, name, "patient_id")?;
    Ok(mask(patients.iter(), |p| ids.contains(p)))
}

/// A filter mask: true where the value is present and `keep` holds.
fn mask<T>(values: impl Iterator<Item = Option<T>>, keep: impl Fn(T) -> bool) -> BooleanArray {
    values.map(|v| Some(v.is_some_and(&keep))).collect()
}

pub(super) fn filter(batch: &RecordBatch, mask: &BooleanArray, name: &str) -> Result<RecordBatch> {
    filter_record_batch(batch, mask).map_err(|e| Error::arrow(name, e))
}
