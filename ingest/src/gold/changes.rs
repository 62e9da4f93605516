//! A refresh's changes to a patient-keyed table, committed by rewriting only the data files
//! that hold a row it changed.
//!
//! The rebuilt patients' rows are compared with the rows they had (as multisets, the `as_of`
//! stamp left out): rows only in the old set are removed, rows only in the new set added, the
//! others left where they are, stamp and all. Removing a row rewrites the file holding it, its
//! other rows into a file of their own; the rows added go into new files. Files are kept apart
//! by how likely their rows are to change again: rows still open (a stay not discharged, a
//! segment not ended, an emergency patient waiting) go into one file and settled rows into
//! another, so the next batch rewrites a file about the size of the census rather than a month
//! of history. The small files a stream leaves behind are merged when a partition holds more
//! than [`MAX_SMALL_FILES`] of them.

use std::collections::{BTreeSet, HashMap};

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, BooleanArray, Int32Array, RecordBatch, StringArray, UInt64Array,
};
use deltalake::arrow::compute::kernels::boolean::not;
use deltalake::arrow::compute::{concat_batches, is_null, take_record_batch};

use super::carry::filter;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::arrow::row::{RowConverter, Rows, SortField};
use deltalake::kernel::Transaction;

use crate::concurrency::at_most;
use crate::error::{Error, Result};
use crate::storage::{
    DataFile, StagedTable, TableRoot, column, decode_file, fetch_file, files_in, partition_value,
};
use crate::tables::{FACT_ADMISSION, FACT_ED_VISIT, FACT_STAY_SEGMENT};

/// Files a rewrite reads at once (a merge or a removed row's month may hold many, each held in
/// memory while read).
const FILES_READ_AT_ONCE: usize = 8;
/// A data file of at most this many rows is small.
const SMALL_FILE_ROWS: usize = 20_000;
/// A partition holding more small files than this has them merged by the next rewrite there.
const MAX_SMALL_FILES: usize = 8;

/// Which rows differ between a new and an old set of rows of one table (the same schema),
/// compared as multisets with the `as_of` stamp left out: a row rebuilt unchanged keeps the
/// stamp of the refresh that last changed it.
struct RowChanges {
    /// The new rows not among the old ones.
    added: BooleanArray,
    /// The old rows not among the new ones.
    removed: BooleanArray,
}

/// The columns rows are compared by, and a converter to comparable bytes.
struct Comparer {
    columns: Vec<usize>,
    converter: RowConverter,
}

impl Comparer {
    fn new(schema: &Schema, name: &str) -> Result<Self> {
        let columns: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name() != "as_of")
            .map(|(i, _)| i)
            .collect();
        let fields = columns
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(|e| Error::arrow(name, e))?;
        Ok(Self { columns, converter })
    }

    fn rows(&self, batch: &RecordBatch, name: &str) -> Result<Rows> {
        let columns: Vec<_> = self
            .columns
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        self.converter
            .convert_columns(&columns)
            .map_err(|e| Error::arrow(name, e))
    }
}

/// A multiset of rows as bytes.
type Multiset = HashMap<Box<[u8]>, usize>;

fn multiset(rows: &Rows) -> Multiset {
    let mut set = Multiset::new();
    for row in rows.iter() {
        *set.entry(row.as_ref().into()).or_default() += 1;
    }
    set
}

/// Takes one `row` out of `set`: whether it was there.
fn take(set: &mut Multiset, row: &[u8]) -> bool {
    match set.get_mut(row) {
        Some(n) => {
            *n -= 1;
            if *n == 0 {
                set.remove(row);
            }
            true
        }
        None => false,
    }
}

/// The rows that differ between `new` and `old`, compared by `comparer`.
fn row_changes(
    comparer: &Comparer,
    name: &str,
    new: &RecordBatch,
    old: &RecordBatch,
) -> Result<RowChanges> {
    let (new_rows, old_rows) = (comparer.rows(new, name)?, comparer.rows(old, name)?);
    let mut unmatched_old = multiset(&old_rows);
    let added: BooleanArray = new_rows
        .iter()
        .map(|r| Some(!take(&mut unmatched_old, r.as_ref())))
        .collect();
    let removed: BooleanArray = old_rows
        .iter()
        .map(|r| Some(take(&mut unmatched_old, r.as_ref())))
        .collect();
    Ok(RowChanges { added, removed })
}

/// The values of the month column `month` of the rows of `batch` selected by `rows`.
fn months_of(
    batch: &RecordBatch,
    rows: &BooleanArray,
    name: &str,
    month: &str,
) -> Result<BTreeSet<i32>> {
    let months = column::<Int32Array>(batch, name, month)?;
    Ok((0..batch.num_rows())
        .filter(|i| rows.value(*i) && months.is_valid(*i))
        .map(|i| months.value(i))
        .collect())
}

/// The months (`month` column) whose rows differ between `new` and `old`.
pub(super) fn changed_months(
    name: &str,
    month: &str,
    new: &RecordBatch,
    old: &RecordBatch,
) -> Result<BTreeSet<i32>> {
    let changes = row_changes(&Comparer::new(&new.schema(), name)?, name, new, old)?;
    let mut months = months_of(new, &changes.added, name, month)?;
    months.extend(months_of(old, &changes.removed, name, month)?);
    Ok(months)
}

/// Which rows of `content` stay: each row equal to one in `unmatched` goes (and is taken out of
/// it). Only the rows of `patients` (those of the rows in `unmatched`) can be equal to one, so
/// only they are compared: a rewritten month file holds thousands of other patients' rows.
fn staying(
    comparer: &Comparer,
    name: &str,
    content: &RecordBatch,
    patients: &BTreeSet<&str>,
    unmatched: &mut Multiset,
) -> Result<BooleanArray> {
    let ids = column::<StringArray>(content, name, "patient_id")?;
    let candidates: Vec<u64> = (0..content.num_rows())
        .filter(|i| ids.is_valid(*i) && patients.contains(ids.value(*i)))
        .map(|i| i as u64)
        .collect();
    let mut stays = vec![true; content.num_rows()];
    if !candidates.is_empty() {
        let indices = UInt64Array::from(candidates);
        let subset = take_record_batch(content, &indices).map_err(|e| Error::arrow(name, e))?;
        for (i, row) in indices
            .values()
            .iter()
            .zip(comparer.rows(&subset, name)?.iter())
        {
            if take(unmatched, row.as_ref()) {
                stays[*i as usize] = false;
            }
        }
    }
    Ok(BooleanArray::from(stays))
}

/// Which rows of a patient-keyed table are still open, likely to change with the next events.
fn open_rows(name: &str, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
    let null_in = |c: &str| -> Result<BooleanArray> {
        let values = batch.column_by_name(c).ok_or_else(|| {
            Error::arrow(
                name,
                std::io::Error::other(format!("column `{c}` is missing")),
            )
        })?;
        is_null(values).map_err(|e| Error::arrow(name, e))
    };
    Ok(Some(match name {
        FACT_ADMISSION => null_in("discharge_time")?,
        FACT_STAY_SEGMENT => null_in("segment_end")?,
        FACT_ED_VISIT => column::<StringArray>(batch, name, "outcome")?
            .iter()
            .map(|o| Some(o == Some("waiting")))
            .collect(),
        _ => return Ok(None),
    }))
}

/// One patient-keyed table's rewrite.
pub(super) struct Rewrite<'a> {
    pub(super) root: &'a TableRoot,
    pub(super) table: &'a DeltaTable,
    pub(super) name: &'static str,
    /// The month partition column.
    pub(super) month: &'static str,
    pub(super) partition_by: &'static [&'static str],
}

impl Rewrite<'_> {
    /// Commits the difference between `previous` (the rebuilt patients' rows as the table
    /// holds them) and `rebuilt`, recording `txns`. `false` (nothing written) when the table
    /// does not hold every row `previous` says it does: the caller replaces whole months.
    pub(super) async fn run(
        &self,
        previous: &RecordBatch,
        rebuilt: RecordBatch,
        txns: &[Transaction],
    ) -> Result<bool> {
        let name = self.name;
        if self.table.snapshot().is_err() {
            return Ok(false);
        }
        let like = rebuilt.schema();
        let comparer = Comparer::new(&like, name)?;
        let changes = row_changes(&comparer, name, &rebuilt, previous)?;
        let added = filter(&rebuilt, &changes.added, name)?;
        let removed = filter(previous, &changes.removed, name)?;
        let removed_months = months_of(previous, &changes.removed, name, self.month)?;
        let mut months = removed_months.clone();
        months.extend(months_of(&rebuilt, &changes.added, name, self.month)?);
        let files = files_in(self.table, name, self.month, &months).await?;

        // The small files of a partition that has too many are merged.
        let mut merged: BTreeSet<String> = BTreeSet::new();
        for m in &months {
            let small: Vec<&DataFile> = files
                .iter()
                .filter(|f| partition_value(f, self.month) == Some(*m))
                .filter(|f| f.num_records().is_some_and(|n| n <= SMALL_FILE_ROWS))
                .collect();
            if small.len() > MAX_SMALL_FILES {
                merged.extend(small.iter().map(|f| f.path().to_string()));
            }
        }
        // The files read: those merged, and those of a removed row's month holding one of its
        // patients (each fetched once, its patient ids decoded first).
        let patients: BTreeSet<&str> = column::<StringArray>(&removed, name, "patient_id")?
            .iter()
            .flatten()
            .collect();
        let id_only = SchemaRef::new(
            like.project(&[like
                .index_of("patient_id")
                .map_err(|e| Error::arrow(name, e))?])
                .map_err(|e| Error::arrow(name, e))?,
        );
        let candidates = files.iter().filter(|f| {
            merged.contains(f.path().as_ref())
                || partition_value(f, self.month).is_some_and(|m| removed_months.contains(&m))
        });
        let (merged_ref, patients_ref, id_only_ref, like_ref) =
            (&merged, &patients, &id_only, &like);
        let reads: Vec<_> = candidates
            .map(|f| async move {
                let bytes = fetch_file(self.table, name, f).await?;
                if !merged_ref.contains(f.path().as_ref()) {
                    let ids = decode_file(bytes.clone(), name, f, id_only_ref)?;
                    let ids = column::<StringArray>(&ids, name, "patient_id")?;
                    if !ids.iter().flatten().any(|p| patients_ref.contains(p)) {
                        return Ok(None);
                    }
                }
                Ok::<_, Error>(Some((f, decode_file(bytes, name, f, like_ref)?)))
            })
            .collect();
        let read = at_most(FILES_READ_AT_ONCE, reads).await?;

        // Take the removed rows out of the files holding them.
        let mut unmatched = multiset(&comparer.rows(&removed, name)?);
        let mut replaced: Vec<DataFile> = Vec::new();
        let mut kept: Vec<RecordBatch> = Vec::new();
        for (file, content) in read.into_iter().flatten() {
            let stays = staying(&comparer, name, &content, &patients, &mut unmatched)?;
            if stays.true_count() < content.num_rows() || merged.contains(file.path().as_ref()) {
                kept.push(filter(&content, &stays, name)?);
                replaced.push(file.clone());
            }
        }
        if !unmatched.is_empty() {
            tracing::warn!(
                table = name,
                rows = unmatched.values().sum::<usize>(),
                "rows a refresh expected are not in the table; replacing their months whole"
            );
            return Ok(false);
        }
        let carried = concat_batches(&like, &kept).map_err(|e| Error::arrow(name, e))?;
        tracing::debug!(
            table = name,
            removed = removed.num_rows(),
            added = added.num_rows(),
            files_rewritten = replaced.len(),
            rows_carried = carried.num_rows(),
            "rewriting the files holding changed rows"
        );
        // The rows carried over and the rows added go into files of their own: a row that
        // changed now is likely to change again soon, and the carried rows of a large file
        // would otherwise be rewritten with it at every batch.
        let mut staged = StagedTable::new(self.root, name, like, self.partition_by)?;
        for rows in [carried, added] {
            match open_rows(name, &rows)? {
                Some(open) => {
                    staged.write(filter(&rows, &open, name)?).await?;
                    let settled = not(&open).map_err(|e| Error::arrow(name, e))?;
                    staged.write(filter(&rows, &settled, name)?).await?;
                }
                None => staged.write(rows).await?,
            }
        }
        staged
            .commit_replacing(self.table, Some(&replaced), txns.to_vec())
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use deltalake::arrow::datatypes::{DataType, Field, TimeUnit};

    use super::*;

    fn rows(months: &[i32], values: &[i64], as_of: i64) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("patient_id", DataType::Utf8, false),
            Field::new("value", DataType::Int64, false),
            Field::new(
                "as_of",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("admission_month", DataType::Int32, false),
        ]);
        let n = months.len();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["p"; n])),
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(TimestampMicrosecondArray::from(vec![as_of; n])),
                Arc::new(Int32Array::from(months.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn only_rows_that_differ_change_and_the_stamp_is_not_compared() {
        let old = rows(
            &[202601, 202601, 202602, 202603, 202605],
            &[1, 2, 3, 4, 6],
            10,
        );
        // January's rows in another order and a later stamp; February's value changed; March's
        // row gone; April's row new; May's row twice where it was once.
        let new = rows(
            &[202601, 202601, 202602, 202604, 202605, 202605],
            &[2, 1, 30, 5, 6, 6],
            20,
        );
        let comparer = Comparer::new(&new.schema(), "t").unwrap();
        let changes = row_changes(&comparer, "t", &new, &old).unwrap();
        let set = |m: &BooleanArray| (0..m.len()).filter(|i| m.value(*i)).collect::<Vec<_>>();
        assert_eq!(set(&changes.added), vec![2, 3, 5]);
        assert_eq!(set(&changes.removed), vec![2, 3]);
        let changed = changed_months("t", "admission_month", &new, &old).unwrap();
        assert_eq!(changed, BTreeSet::from([202602, 202603, 202604, 202605]));
        // A file's rows leave only where equal to a removed row, and only the removed rows'
        // patients are compared.
        let file = rows(&[202601, 202602, 202602], &[1, 2, 2], 10);
        let removed = comparer.rows(&rows(&[202602], &[2], 30), "t").unwrap();
        let mut unmatched = multiset(&removed);
        let stays = staying(&comparer, "t", &file, &BTreeSet::new(), &mut unmatched).unwrap();
        assert_eq!(stays.true_count(), 3);
        assert_eq!(unmatched.len(), 1);
        let stays = staying(
            &comparer,
            "t",
            &file,
            &BTreeSet::from(["p"]),
            &mut unmatched,
        )
        .unwrap();
        assert_eq!(set(&not(&stays).unwrap()), vec![1]);
        assert!(unmatched.is_empty());
        assert!(
            changed_months("t", "admission_month", &old, &old)
                .unwrap()
                .is_empty()
        );
    }
}
