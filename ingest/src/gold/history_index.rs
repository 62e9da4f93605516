//! Every patient's silver records on disk, keyed by patient, so that an incremental refresh
//! reads the histories of the patients it rebuilds instead of searching all of silver for
//! them (31 million records at ten years of a network).
//!
//! Derived from `silver/patient_events` and `silver/ehr_patients`, never the truth (see
//! [`crate::storage::derived`]): for each it records the table's Delta id and the bronze
//! sequence up to which it holds its records, and catches up by reading the rows after it
//! before answering. It is emptied and rebuilt when a table is another or behind it, or when
//! the tracked attributes change. A catch-up interrupted part way only repeats records, which
//! reading drops (a record is identified by its receipt: bronze sequence, source, line).

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use deltalake::datafusion::prelude::{col, lit};
use futures::StreamExt;
use redb::{ReadableTable, TableDefinition};

use super::history::{
    History, Interner, Kind, Observation, Sources, attribute_columns, ehr_columns, event_columns,
    in_receipt_order, read_batch, read_ehr_batch,
};
use crate::error::{Error, Result};
use crate::storage::derived::{Derived, table_id};
use crate::storage::{TableRoot, scan_stream};
use crate::tables::{SILVER_EHR, SILVER_EVENTS};

/// Each patient's records, encoded one after another.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("patient_records");
/// The tracked attributes the records carry, in order.
const TRACKED: &str = "tracked";
/// Records read per write transaction while catching up (bounds its memory).
const RECORDS_PER_TXN: usize = 500_000;
/// The page cache: a refresh reads a few thousand patients' records.
const CACHE_BYTES: usize = 64 << 20;

/// One of the silver tables the index follows.
struct Followed<'a> {
    name: &'static str,
    table: &'a DeltaTable,
    upto: i64,
    /// Metadata keys of its table id and covered sequence.
    id_key: &'static str,
    covered_key: &'static str,
}

/// The silver records of every patient.
#[derive(Debug)]
pub(crate) struct HistoryIndex(Derived);

impl HistoryIndex {
    /// Opens the index of `root`; `None` when another process has it open (the refresh then
    /// reads silver).
    pub(crate) fn open(root: &TableRoot) -> Result<Option<Self>> {
        let derived = Derived::open(
            root,
            "gold_history.redb",
            "patient history index",
            CACHE_BYTES,
        )?;
        Ok(derived.map(Self))
    }

    /// The records of `patients` up to the sources' sequences, each patient's in receipt
    /// order; the index first catches up with the sources.
    pub(crate) async fn load(
        &self,
        sources: &Sources<'_>,
        patients: &BTreeSet<String>,
        tracked: &[String],
    ) -> Result<History> {
        let followed = [
            Followed {
                name: SILVER_EVENTS,
                table: sources.events,
                upto: sources.events_upto,
                id_key: "events_table_id",
                covered_key: "events_covered",
            },
            Followed {
                name: SILVER_EHR,
                table: sources.ehr,
                upto: sources.ehr_upto,
                id_key: "ehr_table_id",
                covered_key: "ehr_covered",
            },
        ];
        self.check(&followed, tracked)?;
        for source in &followed {
            self.catch_up(source, tracked).await?;
        }
        self.read(patients)
    }

    /// Empties the index when it is not of these tables and attributes, or ahead of a table.
    fn check(&self, followed: &[Followed<'_>], tracked: &[String]) -> Result<()> {
        let d = &self.0;
        let tracked = tracked.join("\u{1f}");
        let mut stale = d.meta(TRACKED)?.is_some_and(|t| t != tracked);
        for f in followed {
            let id = d.meta(f.id_key)?;
            stale |= id.is_some() && id != table_id(f.table);
            stale |= d.meta_seq(f.covered_key)? > f.upto;
        }
        if stale {
            tracing::info!(index = %d.path.display(), "the patient history index is of other silver tables or attributes, or ahead of them; rebuilding");
        }
        if stale || d.meta(TRACKED)?.is_none() {
            let txn = d.db.begin_write().map_err(|e| d.fail(e))?;
            txn.delete_table(RECORDS).map_err(|e| d.fail(e))?;
            let mut values = vec![(TRACKED, Some(tracked.as_str()))];
            for f in followed {
                values.extend([(f.id_key, None), (f.covered_key, None)]);
            }
            d.set_meta(&txn, &values)?;
            txn.commit().map_err(|e| d.fail(e))?;
        }
        Ok(())
    }

    /// Adds the records of `source` after its covered sequence, up to its `upto`.
    async fn catch_up(&self, source: &Followed<'_>, tracked: &[String]) -> Result<()> {
        let covered = self.0.meta_seq(source.covered_key)?;
        let Some(attributes) = attribute_columns(source.table, tracked) else {
            return Ok(());
        };
        if covered >= source.upto {
            return Ok(());
        }
        if covered == 0 {
            tracing::info!(index = %self.0.path.display(), table = source.name, "building the patient history index from silver");
        }
        let ehr = source.name == SILVER_EHR;
        let columns = if ehr {
            ehr_columns(&attributes)
        } else {
            event_columns(&attributes)
        };
        let filter = col("bronze_seq")
            .gt(lit(covered))
            .and(col("bronze_seq").lt_eq(lit(source.upto)));
        let mut stream = scan_stream(source.table, source.name, &columns, filter).await?;
        let (mut pending, mut rows) = (History::new(), 0);
        let mut interner = Interner::default();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            if ehr {
                read_ehr_batch(&batch, &attributes, &mut interner, &mut pending)?;
            } else {
                read_batch(&batch, &attributes, &mut interner, &mut pending)?;
            }
            if rows >= RECORDS_PER_TXN {
                // Records without the covered sequence: a crash here only repeats them.
                self.append(&std::mem::take(&mut pending), None)?;
                rows = 0;
            }
        }
        let covered = (source, source.upto.to_string(), table_id(source.table));
        self.append(&pending, Some(covered))?;
        tracing::debug!(
            table = source.name,
            to = source.upto,
            "patient history index caught up"
        );
        Ok(())
    }

    /// Appends `records` in one transaction, recording with them the sequence of the table
    /// they cover.
    fn append(
        &self,
        records: &History,
        covered: Option<(&Followed<'_>, String, Option<String>)>,
    ) -> Result<()> {
        let d = &self.0;
        let txn = d.db.begin_write().map_err(|e| d.fail(e))?;
        {
            let mut table = txn.open_table(RECORDS).map_err(|e| d.fail(e))?;
            let mut bytes = Vec::new();
            for (patient, observations) in records {
                bytes.clear();
                if let Some(held) = table.get(patient.as_str()).map_err(|e| d.fail(e))? {
                    bytes.extend_from_slice(held.value());
                }
                for o in observations {
                    encode(o, &mut bytes);
                }
                table
                    .insert(patient.as_str(), bytes.as_slice())
                    .map_err(|e| d.fail(e))?;
            }
        }
        if let Some((source, upto, id)) = &covered {
            d.set_meta(
                &txn,
                &[
                    (source.covered_key, Some(upto.as_str())),
                    (source.id_key, id.as_deref()),
                ],
            )?;
        }
        txn.commit().map_err(|e| d.fail(e))
    }

    /// The held records of `patients`.
    fn read(&self, patients: &BTreeSet<String>) -> Result<History> {
        let d = &self.0;
        let Some(table) = d.read_table(RECORDS)? else {
            return Ok(History::new());
        };
        let mut history = History::new();
        let mut interner = Interner::default();
        for patient in patients {
            let Some(held) = table.get(patient.as_str()).map_err(|e| d.fail(e))? else {
                continue;
            };
            let mut reader = Reader(held.value());
            let mut observations = Vec::new();
            while !reader.0.is_empty() {
                observations.push(decode(&mut reader, &mut interner).ok_or_else(|| {
                    Error::Index {
                        path: d.path.clone(),
                        message: format!("the records of patient {patient} do not decode"),
                    }
                })?);
            }
            history.insert(patient.clone(), observations);
        }
        in_receipt_order(&mut history);
        for observations in history.values_mut() {
            // Records a catch-up repeated after a crash.
            observations.dedup_by(|a, b| a.received == b.received && a.from_ehr == b.from_ehr);
        }
        Ok(history)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    out.push(u8::from(s.is_some()));
    if let Some(s) = s {
        put_str(out, s);
    }
}

fn put_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    out.push(u8::from(v.is_some()));
    if let Some(v) = v {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends one record to `out`.
fn encode(o: &Observation, out: &mut Vec<u8>) {
    let kind = match o.kind {
        Kind::Flat => 0u8,
        Kind::Arrival => 1,
        Kind::Admit => 2,
        Kind::Transfer => 3,
        Kind::Discharge => 4,
        Kind::Update => 5,
    };
    out.extend_from_slice(&o.received.0.to_le_bytes());
    put_str(out, &o.received.1);
    out.extend_from_slice(&o.received.2.to_le_bytes());
    out.extend([u8::from(o.from_ehr), kind, u8::from(o.corrected)]);
    put_opt_str(out, o.encounter_id.as_deref());
    out.extend_from_slice(&o.hospital_id.to_le_bytes());
    put_str(out, &o.department);
    put_opt_i64(out, o.bed_id);
    put_str(out, &o.gender);
    put_opt_i64(out, o.age.map(i64::from));
    out.extend_from_slice(&o.time.to_le_bytes());
    out.extend_from_slice(&o.received_at.to_le_bytes());
    put_opt_i64(out, o.discharge_time);
    out.extend_from_slice(&(o.attributes.len() as u32).to_le_bytes());
    for a in &o.attributes {
        put_opt_str(out, a.as_deref());
    }
}

/// What is left of an encoded value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        Some(match self.u8()? {
            0 => None,
            _ => Some(self.str()?.to_string()),
        })
    }
    fn opt_i64(&mut self) -> Option<Option<i64>> {
        Some(match self.u8()? {
            0 => None,
            _ => Some(self.i64()?),
        })
    }
}

/// Reads one record; `None` when the bytes are not one.
fn decode(r: &mut Reader<'_>, interner: &mut Interner) -> Option<Observation> {
    let seq = r.i64()?;
    let source = interner.intern(r.str()?);
    let line = r.i64()?;
    let (from_ehr, kind, corrected) = (r.u8()? != 0, r.u8()?, r.u8()? != 0);
    let kind = match kind {
        0 => Kind::Flat,
        1 => Kind::Arrival,
        2 => Kind::Admit,
        3 => Kind::Transfer,
        4 => Kind::Discharge,
        _ => Kind::Update,
    };
    Some(Observation {
        received: (seq, source, line),
        from_ehr,
        kind,
        corrected,
        encounter_id: r.opt_str()?,
        hospital_id: r.i32()?,
        department: r.str()?.to_string(),
        bed_id: r.opt_i64()?,
        gender: r.str()?.to_string(),
        age: r.opt_i64()?.map(|a| a as i32),
        time: r.i64()?,
        received_at: r.i64()?,
        discharge_time: r.opt_i64()?,
        attributes: (0..r.u32()?)
            .map(|_| r.opt_str())
            .collect::<Option<Vec<_>>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(line: i64, attributes: Vec<Option<String>>) -> Observation {
        let mut interner = Interner::default();
        Observation {
            received: (7, interner.intern("events-000001.ndjson"), line),
            from_ehr: false,
            kind: Kind::Transfer,
            encounter_id: Some("E1".into()),
            hospital_id: 3,
            department: "ICU".into(),
            bed_id: None,
            gender: "F".into(),
            age: Some(-1),
            time: -5,
            received_at: i64::MAX,
            discharge_time: Some(0),
            corrected: true,
            attributes,
        }
    }

    #[test]
    fn records_decode_as_they_were_encoded_and_a_cut_value_is_an_error() {
        let records = [
            observation(1, vec![None, Some("Medicare".into())]),
            observation(2, vec![]),
        ];
        let mut bytes = Vec::new();
        records.iter().for_each(|o| encode(o, &mut bytes));
        let mut reader = Reader(&bytes);
        let mut interner = Interner::default();
        for expected in &records {
            let got = decode(&mut reader, &mut interner).unwrap();
            assert_eq!(format!("{got:?}"), format!("{expected:?}"));
        }
        assert!(reader.0.is_empty());
        let cut = &bytes[..bytes.len() - 1];
        let mut reader = Reader(cut);
        decode(&mut reader, &mut interner).unwrap();
        assert!(decode(&mut reader, &mut interner).is_none());
    }
}
