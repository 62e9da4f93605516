//! Turns one bronze batch into silver rows, quarantine rows and counts.

use std::collections::HashMap;
use std::sync::Arc;

use chrono_tz::Tz;
use deltalake::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::compute::take;
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::record::{Record, Shape};
use super::rules::{Context, Destination, RULES, Verdict, evaluate};
use crate::error::{Error, Result};
use crate::reference::ReferenceData;
use crate::tables::{
    BRONZE_EVENTS, QUARANTINE, QUARANTINE_SCHEMA, SILVER_EVENTS, SILVER_SCHEMA, attribute_column,
};

/// Record counts of one refinement, by outcome and by rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records read from bronze.
    pub records_in: u64,
    /// Records written to silver.
    pub silver_rows: u64,
    /// Records written to quarantine.
    pub quarantined: u64,
    /// Records dropped as duplicates.
    pub duplicates: u64,
    /// Matches per rule, in the order of the dataset's rule table ([`RULES`] for events).
    pub rules: Vec<u64>,
}

impl Counts {
    /// Zero counts for a rule table of `rules` rules.
    pub fn for_rules(rules: usize) -> Self {
        Self {
            rules: vec![0; rules],
            ..Self::default()
        }
    }

    /// Whether `records_in = silver_rows + quarantined + duplicates` (contract §3).
    pub fn balanced(&self) -> bool {
        self.records_in == self.silver_rows + self.quarantined + self.duplicates
    }

    /// An internal error unless the counts are [`Counts::balanced`]: nothing may be lost.
    pub(crate) fn ensure_balanced(&self) -> crate::error::Result<()> {
        if self.balanced() {
            return Ok(());
        }
        Err(crate::error::Error::Internal(format!(
            "internal accounting error: records_in {} != silver {} + quarantined {} + duplicates {}",
            self.records_in, self.silver_rows, self.quarantined, self.duplicates
        )))
    }

    /// Adds another set of counts to this one.
    pub fn add(&mut self, other: &Counts) {
        self.records_in += other.records_in;
        self.silver_rows += other.silver_rows;
        self.quarantined += other.quarantined;
        self.duplicates += other.duplicates;
        self.rules
            .resize(self.rules.len().max(other.rules.len()), 0);
        for (a, b) in self.rules.iter_mut().zip(&other.rules) {
            *a += b;
        }
    }
}

/// The output of refining one bronze batch.
#[derive(Debug)]
pub(crate) struct Refined {
    pub(crate) silver: RecordBatch,
    pub(crate) quarantine: RecordBatch,
    pub(crate) counts: Counts,
}

/// Lineage columns copied from bronze to silver and quarantine, in schema order.
const LINEAGE: [&str; 6] = [
    "bronze_seq",
    "batch_id",
    "source",
    "source_partition",
    "source_line",
    "received_at",
];

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    crate::storage::column(batch, BRONZE_EVENTS, name)
}

/// Records a parsing thread is given at least: a stream's micro-batch of a few hundred records
/// is parsed on the calling thread, as starting threads for it costs more than it saves (and
/// each thread that ends leaves its allocator pages behind to be reclaimed).
const RECORDS_PER_THREAD: usize = 16_384;

/// Parses records on all cores when there are enough of them; order is preserved.
fn parse_all(raw: &BinaryArray, reference: &ReferenceData, tz: Tz) -> Vec<Record> {
    let n = raw.len();
    let workers = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(8);
    let per = n.div_ceil(workers.max(1)).max(RECORDS_PER_THREAD);
    let parse = |range: std::ops::Range<usize>| -> Vec<Record> {
        range
            .map(|i| Record::parse(raw.value(i), reference, tz))
            .collect()
    };
    if per >= n {
        return parse(0..n);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|start| s.spawn(move || parse(start..(start + per).min(n))))
            .collect();
        // A parser that panicked panics here too: its records are never dropped silently.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Refines one bronze batch. `seen` holds the duplicate keys already in silver and gains the
/// keys of rows sent to silver; `extra_columns` lists attribute columns in table order and
/// gains new ones.
pub(crate) fn refine(
    bronze: &RecordBatch,
    reference: &ReferenceData,
    tz: Tz,
    ctx: &mut Context,
    extra_columns: &mut Vec<String>,
) -> Result<Refined> {
    let raw: &BinaryArray = column(bronze, "raw")?;
    let received: &TimestampMicrosecondArray = column(bronze, "received_at")?;
    let mut records = parse_all(raw, reference, tz);
    ctx.seen.begin(records.iter().map(|r| r.dedupe_key))?;
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(records.len());
    for (i, record) in records.iter_mut().enumerate() {
        ctx.received_at = received.value(i);
        verdicts.push(evaluate(record, ctx));
    }

    let mut counts = Counts {
        records_in: records.len() as u64,
        ..Counts::for_rules(RULES.len())
    };
    let mut silver_idx = Vec::new();
    let mut quarantine_idx = Vec::new();
    for (i, v) in verdicts.iter().enumerate() {
        for r in &v.matched {
            counts.rules[*r] += 1;
        }
        match v.destination {
            Destination::Silver => silver_idx.push(i as u32),
            Destination::Quarantine => quarantine_idx.push(i as u32),
            Destination::Duplicate => counts.duplicates += 1,
        }
    }
    counts.silver_rows = silver_idx.len() as u64;
    counts.quarantined = quarantine_idx.len() as u64;

    let silver = silver_batch(bronze, &records, &verdicts, &silver_idx, extra_columns)?;
    let quarantine = quarantine_batch(bronze, &records, &verdicts, &quarantine_idx)?;
    Ok(Refined {
        silver,
        quarantine,
        counts,
    })
}

pub(crate) fn lineage_columns(
    bronze: &RecordBatch,
    idx: &[u32],
    table: &str,
) -> Result<Vec<ArrayRef>> {
    let indices = UInt32Array::from(idx.to_vec());
    LINEAGE
        .iter()
        .map(|name| {
            let col = bronze.column_by_name(name).ok_or_else(|| {
                Error::arrow(table, std::io::Error::other(format!("missing `{name}`")))
            })?;
            take(col.as_ref(), &indices, None).map_err(|e| Error::arrow(table, e))
        })
        .collect()
}

fn rule_names(matched: &[usize], builder: &mut ListBuilder<StringBuilder>) {
    for r in matched {
        builder.values().append_value(RULES[*r].name);
    }
    builder.append(true);
}

fn silver_batch(
    bronze: &RecordBatch,
    records: &[Record],
    verdicts: &[Verdict],
    idx: &[u32],
    extra_columns: &mut Vec<String>,
) -> Result<RecordBatch> {
    let rows: Vec<&Record> = idx.iter().map(|i| &records[*i as usize]).collect();
    let n = rows.len();
    let str_col = |f: &dyn Fn(&Record) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(|r| f(r)).collect::<StringArray>())
    };
    let ts_col = |f: &dyn Fn(&Record) -> Option<i64>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|r| f(r))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    };
    let is_adt = |r: &Record| r.shape == Some(Shape::Adt);
    let mut flags = ListBuilder::new(StringBuilder::new());
    for i in idx {
        rule_names(&verdicts[*i as usize].matched, &mut flags);
    }

    let mut columns = lineage_columns(bronze, idx, SILVER_EVENTS)?;
    columns.extend([
        str_col(&|r| r.shape.map(Shape::as_str)),
        str_col(&|r| r.event_id.as_deref()),
        str_col(&|r| r.event_type.valid().copied()),
        ts_col(&|r| r.time.valid().copied().filter(|_| is_adt(r))),
        str_col(&|r| r.encounter_id.as_deref()),
        str_col(&|r| r.patient_id.as_deref()),
        Arc::new(
            rows.iter()
                .map(|r| r.hospital_id.valid().copied())
                .collect::<Int32Array>(),
        ),
        str_col(&|r| r.department.valid().map(String::as_str)),
        Arc::new(
            rows.iter()
                .map(|r| r.bed_id.valid().copied())
                .collect::<Int64Array>(),
        ),
        str_col(&|r| Some(r.gender)),
        Arc::new(
            rows.iter()
                .map(|r| r.age.valid().copied())
                .collect::<Int32Array>(),
        ),
        ts_col(&|r| r.time.valid().copied().filter(|_| !is_adt(r))),
        ts_col(&|r| r.discharge_time.valid().copied()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.time_corrected))
                .collect::<BooleanArray>(),
        ),
        Arc::new(flags.finish()),
        Arc::new(
            rows.iter()
                .map(|r| Some(format!("{:032x}", r.dedupe_key)))
                .collect::<StringArray>(),
        ),
    ]);

    // Attribute columns (schema evolution, contract §1.3): every column the table already has,
    // then new ones in order of first appearance.
    let mut position: HashMap<String, usize> = extra_columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i))
        .collect();
    // Column of each raw key seen in this batch (several keys may share a column).
    let mut key_column: HashMap<&str, usize> = HashMap::new();
    let mut values: Vec<Vec<Option<&str>>> = vec![vec![None; n]; extra_columns.len()];
    for (row, r) in rows.iter().enumerate() {
        for (key, text) in &r.extras {
            let col = *key_column.entry(key.as_str()).or_insert_with(|| {
                let name = attribute_column(key);
                *position.entry(name.clone()).or_insert_with(|| {
                    extra_columns.push(name);
                    values.push(vec![None; n]);
                    values.len() - 1
                })
            });
            values[col][row] = Some(text.as_str());
        }
    }
    let mut fields: Vec<Field> = SILVER_SCHEMA
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for (name, vals) in extra_columns.iter().zip(values) {
        fields.push(Field::new(name, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(vals)));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow(SILVER_EVENTS, e))
}

fn quarantine_batch(
    bronze: &RecordBatch,
    records: &[Record],
    verdicts: &[Verdict],
    idx: &[u32],
) -> Result<RecordBatch> {
    quarantine_rows(
        bronze,
        idx,
        |i| records[i].shape.map(Shape::as_str),
        |i| verdicts[i].matched.iter().map(|r| RULES[*r].name).collect(),
    )
}

/// `silver/quarantine` rows for the bronze rows `idx`: lineage, the record kind, every
/// reason, and the raw text.
pub(crate) fn quarantine_rows<'a>(
    bronze: &RecordBatch,
    idx: &[u32],
    kind: impl Fn(usize) -> Option<&'a str>,
    reasons: impl Fn(usize) -> Vec<&'static str>,
) -> Result<RecordBatch> {
    let raw: &BinaryArray = column(bronze, "raw")?;
    let mut reason_list = ListBuilder::new(StringBuilder::new());
    for i in idx {
        for r in reasons(*i as usize) {
            reason_list.values().append_value(r);
        }
        reason_list.append(true);
    }
    let mut columns = lineage_columns(bronze, idx, QUARANTINE)?;
    columns.extend([
        Arc::new(
            idx.iter()
                .map(|i| kind(*i as usize))
                .collect::<StringArray>(),
        ) as ArrayRef,
        Arc::new(reason_list.finish()),
        Arc::new(
            idx.iter()
                .map(|i| Some(String::from_utf8_lossy(raw.value(*i as usize))))
                .collect::<StringArray>(),
        ),
    ]);
    RecordBatch::try_new(QUARANTINE_SCHEMA.clone(), columns)
        .map_err(|e| Error::arrow(QUARANTINE, e))
}
