//! Silver split by patient for a full build: one pass over the silver tables writes each
//! record to the slice of its patient (a hash of the patient id) in Arrow IPC files on local
//! disk, and the build then holds one slice's history at a time. Every record of a patient
//! lands in the same slice, so a slice rebuilds its patients exactly as a build of everything
//! would.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use deltalake::arrow::array::{RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::compute::take_record_batch;
use deltalake::arrow::ipc::reader::StreamReader;
use deltalake::arrow::ipc::writer::StreamWriter;
use deltalake::datafusion::prelude::{col, lit};
use futures::TryStreamExt;

use super::history::{
    History, Interner, Sources, attribute_columns, ehr_columns, event_columns, in_receipt_order,
    read_batch, read_ehr_batch,
};
use super::history_index::patient_hash;
use crate::error::{Error, Result};
use crate::storage::{TableRoot, column, row_count, scan_stream};
use crate::tables::{SILVER_EHR, SILVER_EVENTS};

/// Silver, split into slices of about `rows_per_slice` records.
#[derive(Debug)]
pub(super) struct Slices {
    dir: tempfile::TempDir,
    ehr_attributes: Option<Vec<Option<String>>>,
    event_attributes: Option<Vec<Option<String>>>,
}

/// The slice (of `count`) holding the patient `id`'s records: slices are ranges of the
/// patient hash, in order, so the history index (keyed by the same hash) is filled slice after
/// slice at the end of its key space.
fn slice_of(id: &str, count: usize) -> usize {
    ((u128::from(patient_hash(id)) * count as u128) >> 64) as usize
}

impl Slices {
    /// How many slices of about `rows_per_slice` records the silver tables make.
    pub(super) async fn count(sources: &Sources<'_>, rows_per_slice: usize) -> Result<usize> {
        let rows = row_count(sources.events, SILVER_EVENTS).await?
            + row_count(sources.ehr, SILVER_EHR).await?;
        Ok(rows.div_ceil(rows_per_slice.max(1)).max(1))
    }

    /// Splits the silver records up to the sources' sequences into `count` slices, kept in a
    /// folder of `scratch` until dropped.
    pub(super) async fn split(
        sources: &Sources<'_>,
        tracked: &[String],
        count: usize,
        scratch: &Path,
    ) -> Result<Self> {
        let dir = TableRoot::scratch_subdir(scratch, "gold-slices-")?;
        let ehr_attributes = attribute_columns(sources.ehr, tracked);
        let event_attributes = attribute_columns(sources.events, tracked);
        if let Some(attributes) = &ehr_attributes {
            let filter = col("bronze_seq").lt_eq(lit(sources.ehr_upto));
            let columns = ehr_columns(attributes);
            let stream = scan_stream(sources.ehr, SILVER_EHR, &columns, filter).await?;
            split_into(stream, SILVER_EHR, count, dir.path()).await?;
        }
        if let Some(attributes) = &event_attributes {
            let filter = col("bronze_seq").lt_eq(lit(sources.events_upto));
            let columns = event_columns(attributes);
            let stream = scan_stream(sources.events, SILVER_EVENTS, &columns, filter).await?;
            split_into(stream, SILVER_EVENTS, count, dir.path()).await?;
        }
        Ok(Self {
            dir,
            ehr_attributes,
            event_attributes,
        })
    }

    /// The history of the patients of slice `k`.
    pub(super) fn load(&self, k: usize) -> Result<History> {
        let mut history = History::new();
        let mut interner = Interner::default();
        if let Some(attributes) = &self.ehr_attributes {
            for b in read_slice(self.dir.path(), SILVER_EHR, k)? {
                read_ehr_batch(&b?, attributes, &mut interner, &mut history)?;
            }
        }
        if let Some(attributes) = &self.event_attributes {
            for b in read_slice(self.dir.path(), SILVER_EVENTS, k)? {
                read_batch(&b?, attributes, &mut interner, &mut history)?;
            }
        }
        in_receipt_order(&mut history);
        Ok(history)
    }
}

/// The file of slice `k` of the table `name`.
fn slice_path(dir: &Path, name: &str, k: usize) -> PathBuf {
    dir.join(format!("{}-{k:05}.arrows", name.replace('/', "-")))
}

/// Writes each row of `stream` to the file of its patient's slice.
async fn split_into(
    stream: impl futures::Stream<Item = Result<RecordBatch>>,
    name: &str,
    count: usize,
    dir: &Path,
) -> Result<()> {
    let mut writers: Vec<Option<StreamWriter<BufWriter<File>>>> =
        std::iter::repeat_with(|| None).take(count).collect();
    let arrow = |e| Error::arrow(name, e);
    futures::pin_mut!(stream);
    while let Some(batch) = stream.try_next().await? {
        let ids = column::<StringArray>(&batch, name, "patient_id")?;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); count];
        for (i, id) in ids.iter().enumerate() {
            rows[slice_of(id.unwrap_or_default(), count)].push(i as u32);
        }
        for (k, rows) in rows.into_iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            let part = take_record_batch(&batch, &UInt32Array::from(rows)).map_err(arrow)?;
            let writer = match &mut writers[k] {
                Some(writer) => writer,
                slot => {
                    let path = slice_path(dir, name, k);
                    let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
                    slot.insert(
                        StreamWriter::try_new(BufWriter::new(file), &batch.schema())
                            .map_err(arrow)?,
                    )
                }
            };
            writer.write(&part).map_err(arrow)?;
        }
    }
    for writer in writers.iter_mut().flatten() {
        writer.finish().map_err(arrow)?;
    }
    Ok(())
}

/// The batches of slice `k` of the table `name` (none if no record fell in it).
fn read_slice(
    dir: &Path,
    name: &str,
    k: usize,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>>>> {
    let path = slice_path(dir, name, k);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Box::new(std::iter::empty()));
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let name = name.to_string();
    let reader = StreamReader::try_new(std::io::BufReader::new(file), None)
        .map_err(|e| Error::arrow(&name, e))?;
    Ok(Box::new(
        reader.map(move |b| b.map_err(|e| Error::arrow(&name, e))),
    ))
}
