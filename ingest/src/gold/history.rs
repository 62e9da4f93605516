//! Reads silver records back as observations of patients, grouped by patient.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::datafusion::prelude::{col, lit};

use crate::error::{Error, Result};
use crate::storage::{Keys, column, scan, scan_keyed};
use crate::tables::{SILVER_EHR, SILVER_EVENTS, attribute_column};

/// What a silver record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A flat admission record (one stay).
    Flat,
    /// An ADT event of this type.
    Arrival,
    Admit,
    Transfer,
    Discharge,
    Update,
}

impl Kind {
    fn of(record_kind: &str, event_type: Option<&str>) -> Self {
        match (record_kind, event_type) {
            ("flat", _) => Self::Flat,
            (_, Some("ARRIVAL")) => Self::Arrival,
            (_, Some("ADMIT")) => Self::Admit,
            (_, Some("TRANSFER")) => Self::Transfer,
            (_, Some("DISCHARGE")) => Self::Discharge,
            _ => Self::Update,
        }
    }
}

/// One silver record of a patient.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    /// Receipt order: bronze sequence, source, line.
    pub(crate) received: (i64, Arc<str>, i64),
    /// An EHR extract row (its bronze sequence is `silver/ehr_patients`'s), not an event.
    pub(crate) from_ehr: bool,
    pub(crate) kind: Kind,
    pub(crate) encounter_id: Option<String>,
    pub(crate) hospital_id: i32,
    pub(crate) department: String,
    pub(crate) bed_id: Option<i64>,
    pub(crate) gender: String,
    pub(crate) age: Option<i32>,
    /// Event time (ADT) or admission time (flat), UTC micros.
    pub(crate) time: i64,
    /// When the record reached bronze, UTC micros.
    pub(crate) received_at: i64,
    pub(crate) discharge_time: Option<i64>,
    pub(crate) corrected: bool,
    /// Values of the tracked attributes, in configuration order.
    pub(crate) attributes: Vec<Option<String>>,
}

/// One shared copy of each source name: millions of observations name a few files.
#[derive(Debug, Default)]
pub(super) struct Interner(HashMap<String, Arc<str>>);

impl Interner {
    pub(super) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.0.get(s) {
            return found.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.0.insert(s.to_string(), shared.clone());
        shared
    }
}

/// Observations by patient id, each patient's in receipt order.
pub(crate) type History = BTreeMap<String, Vec<Observation>>;

const COLUMNS: [&str; 16] = [
    "bronze_seq",
    "received_at",
    "source",
    "source_line",
    "record_kind",
    "event_type",
    "event_time",
    "encounter_id",
    "patient_id",
    "hospital_id",
    "department",
    "bed_id",
    "gender",
    "age",
    "admission_time",
    "discharge_time",
];

/// The patients with rows in the silver table `name` after bronze sequence `after`.
pub(crate) async fn patients_since(
    silver: &DeltaTable,
    name: &str,
    after: i64,
) -> Result<BTreeSet<String>> {
    let batches = scan(
        silver,
        name,
        &["patient_id"],
        col("bronze_seq").gt(lit(after)),
        &[],
    )
    .await?;
    let mut out = BTreeSet::new();
    for b in &batches {
        let ids = column::<StringArray>(b, name, "patient_id")?;
        out.extend(ids.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// The silver tables gold reads, and how far.
#[derive(Debug)]
pub(crate) struct Sources<'a> {
    pub(crate) events: &'a DeltaTable,
    pub(crate) events_upto: i64,
    pub(crate) ehr: &'a DeltaTable,
    pub(crate) ehr_upto: i64,
}

/// The tracked attributes' columns that exist in `table` (by position in `tracked`).
pub(super) fn attribute_columns(
    table: &DeltaTable,
    tracked: &[String],
) -> Option<Vec<Option<String>>> {
    let existing: Vec<String> = table
        .snapshot()
        .ok()?
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect();
    Some(
        tracked
            .iter()
            .map(|a| Some(attribute_column(a)).filter(|c| existing.contains(c)))
            .collect(),
    )
}

/// The columns gold reads of `silver/ehr_patients`, given its tracked attribute columns.
pub(super) fn ehr_columns(attributes: &[Option<String>]) -> Vec<&str> {
    let mut columns = vec![
        "bronze_seq",
        "received_at",
        "source",
        "source_line",
        "patient_id",
        "gender",
        "age",
        "updated_at",
    ];
    columns.extend(attributes.iter().flatten().map(String::as_str));
    columns
}

/// The columns gold reads of `silver/patient_events`, given its tracked attribute columns.
pub(super) fn event_columns(attributes: &[Option<String>]) -> Vec<&str> {
    let mut columns: Vec<&str> = COLUMNS.to_vec();
    columns.push("admission_time_corrected");
    columns.extend(attributes.iter().flatten().map(String::as_str));
    columns
}

/// Every silver record and EHR row of the given patients (`None`: all), up to the given
/// bronze sequences.
pub(crate) async fn load(
    sources: &Sources<'_>,
    patients: Option<&BTreeSet<String>>,
    tracked: &[String],
) -> Result<History> {
    let keys = patients.map(|values| Keys {
        column: "patient_id",
        values,
        keep: true,
    });
    let mut history = History::new();
    let mut interner = Interner::default();
    if let Some(attributes) = attribute_columns(sources.ehr, tracked) {
        let filter = col("bronze_seq").lt_eq(lit(sources.ehr_upto));
        let columns = ehr_columns(&attributes);
        for b in scan_keyed(sources.ehr, SILVER_EHR, &columns, filter, keys, &[]).await? {
            read_ehr_batch(&b, &attributes, &mut interner, &mut history)?;
        }
    }
    if let Some(attributes) = attribute_columns(sources.events, tracked) {
        let filter = col("bronze_seq").lt_eq(lit(sources.events_upto));
        let columns = event_columns(&attributes);
        for b in scan_keyed(sources.events, SILVER_EVENTS, &columns, filter, keys, &[]).await? {
            read_batch(&b, &attributes, &mut interner, &mut history)?;
        }
    }
    in_receipt_order(&mut history);
    Ok(history)
}

/// Each patient's observations in receipt order.
pub(super) fn in_receipt_order(history: &mut History) {
    for observations in history.values_mut() {
        observations.sort_by(|a, b| a.received.cmp(&b.received));
    }
}

/// EHR rows are demographic updates at their `updated_at` time.
pub(super) fn read_ehr_batch(
    b: &RecordBatch,
    attributes: &[Option<String>],
    sources: &mut Interner,
    history: &mut History,
) -> Result<()> {
    let t = SILVER_EHR;
    let seq = column::<Int64Array>(b, t, "bronze_seq")?;
    let source = column::<StringArray>(b, t, "source")?;
    let line = column::<Int64Array>(b, t, "source_line")?;
    let patient = column::<StringArray>(b, t, "patient_id")?;
    let gender = column::<StringArray>(b, t, "gender")?;
    let age = column::<Int32Array>(b, t, "age")?;
    let updated = column::<TimestampMicrosecondArray>(b, t, "updated_at")?;
    let received = column::<TimestampMicrosecondArray>(b, t, "received_at")?;
    let attrs = text_columns(b, t, attributes)?;
    for i in 0..b.num_rows() {
        history
            .entry(patient.value(i).to_string())
            .or_default()
            .push(Observation {
                received: (seq.value(i), sources.intern(source.value(i)), line.value(i)),
                from_ehr: true,
                kind: Kind::Update,
                encounter_id: None,
                hospital_id: 0,
                department: String::new(),
                bed_id: None,
                gender: gender.value(i).to_string(),
                age: age.is_valid(i).then(|| age.value(i)),
                time: updated.value(i),
                received_at: received.value(i),
                discharge_time: None,
                corrected: false,
                attributes: values_at(&attrs, i),
            });
    }
    Ok(())
}

fn text_columns<'a>(
    b: &'a RecordBatch,
    table: &str,
    attributes: &[Option<String>],
) -> Result<Vec<Option<&'a StringArray>>> {
    attributes
        .iter()
        .map(|a| {
            a.as_deref()
                .map(|name| column::<StringArray>(b, table, name))
                .transpose()
        })
        .collect()
}

fn values_at(columns: &[Option<&StringArray>], i: usize) -> Vec<Option<String>> {
    columns
        .iter()
        .map(|a| a.and_then(|a| a.is_valid(i).then(|| a.value(i).to_string())))
        .collect()
}

pub(super) fn read_batch(
    b: &RecordBatch,
    attributes: &[Option<String>],
    sources: &mut Interner,
    history: &mut History,
) -> Result<()> {
    let t = SILVER_EVENTS;
    let seq = column::<Int64Array>(b, t, "bronze_seq")?;
    let source = column::<StringArray>(b, t, "source")?;
    let line = column::<Int64Array>(b, t, "source_line")?;
    let record_kind = column::<StringArray>(b, t, "record_kind")?;
    let event_type = column::<StringArray>(b, t, "event_type")?;
    let event_time = column::<TimestampMicrosecondArray>(b, t, "event_time")?;
    let encounter = column::<StringArray>(b, t, "encounter_id")?;
    let patient = column::<StringArray>(b, t, "patient_id")?;
    let hospital = column::<Int32Array>(b, t, "hospital_id")?;
    let department = column::<StringArray>(b, t, "department")?;
    let bed = column::<Int64Array>(b, t, "bed_id")?;
    let gender = column::<StringArray>(b, t, "gender")?;
    let age = column::<Int32Array>(b, t, "age")?;
    let admission = column::<TimestampMicrosecondArray>(b, t, "admission_time")?;
    let discharge = column::<TimestampMicrosecondArray>(b, t, "discharge_time")?;
    let corrected = column::<BooleanArray>(b, t, "admission_time_corrected")?;
    let received = column::<TimestampMicrosecondArray>(b, t, "received_at")?;
    let attrs = text_columns(b, t, attributes)?;
    for i in 0..b.num_rows() {
        let kind = Kind::of(
            record_kind.value(i),
            event_type.is_valid(i).then(|| event_type.value(i)),
        );
        let time = if kind == Kind::Flat {
            admission.is_valid(i).then(|| admission.value(i))
        } else {
            event_time.is_valid(i).then(|| event_time.value(i))
        };
        // The silver rules quarantine records without their time.
        let Some(time) = time else {
            return Err(Error::Internal(format!(
                "silver record {}:{} has no {} time",
                source.value(i),
                line.value(i),
                if kind == Kind::Flat {
                    "admission"
                } else {
                    "event"
                }
            )));
        };
        history
            .entry(patient.value(i).to_string())
            .or_default()
            .push(Observation {
                received: (seq.value(i), sources.intern(source.value(i)), line.value(i)),
                from_ehr: false,
                kind,
                encounter_id: encounter
                    .is_valid(i)
                    .then(|| encounter.value(i).to_string()),
                hospital_id: hospital.value(i),
                department: department.value(i).to_string(),
                bed_id: bed.is_valid(i).then(|| bed.value(i)),
                gender: gender.value(i).to_string(),
                age: age.is_valid(i).then(|| age.value(i)),
                time,
                received_at: received.value(i),
                discharge_time: discharge.is_valid(i).then(|| discharge.value(i)),
                corrected: corrected.value(i),
                attributes: values_at(&attrs, i),
            });
    }
    Ok(())
}
