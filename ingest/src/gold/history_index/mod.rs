//! Every patient's silver records on disk, keyed by patient, so that an incremental refresh
//! reads the histories of the patients it rebuilds instead of searching all of silver for
//! them (31 million records at ten years of a network).
//!
//! Derived from `silver/patient_events` and `silver/ehr_patients`, never the truth (see
//! [`crate::storage::derived`]): for each it records the table's Delta id and the bronze
//! sequence up to which it holds its records, and catches up by reading the rows after it
//! before answering. A full build fills it from the slices it rebuilds, each patient's records
//! written once; otherwise it is emptied and rebuilt when a table is another or behind it, or
//! when the tracked attributes or the encoding change. A catch-up interrupted part way only
//! repeats records, which reading drops (a record is identified by its receipt: bronze
//! sequence, source, line); a fill interrupted part way leaves an index that is rebuilt.
//!
//! It may run ahead of a refresh: a stream catches it up with the batch it has just landed
//! while gold still refreshes the batch before, whose histories then end at that refresh's
//! sequences. One catch-up or fill at a time.

mod codec;

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use deltalake::datafusion::prelude::{col, lit};
use futures::StreamExt;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use self::codec::{Reader, SourceIds, SourceNames, decode, encode};
use super::history::{
    History, Interner, Sources, attribute_columns, ehr_columns, event_columns, in_receipt_order,
    read_batch, read_ehr_batch,
};
use crate::batch::Dataset;
use crate::error::{Error, Result};
use crate::storage::derived::{Derived, table_id};
use crate::storage::{TableRoot, scan_stream, txn_version, update};
use crate::tables::{SILVER_APP, SILVER_EHR, SILVER_EVENTS};

/// Each patient's records, encoded one after another, keyed by [`patient_key`].
const RECORDS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("patient_records");
/// The sources the records name, by number.
const SOURCES: TableDefinition<u32, &str> = TableDefinition::new("sources");
/// The tracked attributes the records carry, in order, and the encoding; both written last
/// when the index is filled.
const TRACKED: &str = "tracked";
const FORMAT: &str = "format";
/// The encoding of [`codec`]: records name their source by number.
const FORMAT_VERSION: &str = "2";
/// Records read per write transaction while catching up (bounds its memory).
const RECORDS_PER_TXN: usize = 500_000;
/// The page cache: a refresh reads a few thousand patients' records.
const CACHE_BYTES: usize = 64 << 20;

/// The hash of a patient id that orders the index (and slices a full build).
pub(crate) fn patient_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// A patient's key in the index: their hash first, so that a full build, whose slices are
/// ranges of the hash, writes each slice's patients after the previous slice's instead of
/// among them (which would rewrite every page on every slice).
fn patient_key(id: &str) -> (u64, &str) {
    (patient_hash(id), id)
}

/// One of the silver tables the index follows.
struct Followed<'a> {
    name: &'static str,
    table: &'a DeltaTable,
    upto: i64,
    /// The application id whose transaction version is the table's sequence.
    app: &'static str,
    /// Metadata keys of its table id and covered sequence.
    id_key: &'static str,
    covered_key: &'static str,
}

/// The silver tables of `sources`, as the index follows them.
fn followed<'a>(sources: &Sources<'a>) -> [Followed<'a>; 2] {
    [
        Followed {
            name: SILVER_EVENTS,
            table: sources.events,
            upto: sources.events_upto,
            app: SILVER_APP,
            id_key: "events_table_id",
            covered_key: "events_covered",
        },
        Followed {
            name: SILVER_EHR,
            table: sources.ehr,
            upto: sources.ehr_upto,
            app: Dataset::Ehr.silver_app(),
            id_key: "ehr_table_id",
            covered_key: "ehr_covered",
        },
    ]
}

/// The silver records of every patient.
#[derive(Debug)]
pub(crate) struct HistoryIndex {
    derived: Derived,
    /// Taken by a catch-up or a fill, which write the index.
    writing: tokio::sync::Mutex<()>,
}

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
        Ok(derived.map(|derived| Self {
            derived,
            writing: tokio::sync::Mutex::default(),
        }))
    }

    /// The records of `patients` up to the sources' sequences, each patient's in receipt
    /// order; the index first catches up with the sources.
    pub(crate) async fn load(
        &self,
        sources: &Sources<'_>,
        patients: &BTreeSet<String>,
        tracked: &[String],
    ) -> Result<History> {
        self.catch_up(sources, tracked).await?;
        self.read(patients, sources)
    }

    /// Brings the index up to the sources' sequences, rebuilding it from silver when it is
    /// not [usable](Self::usable).
    pub(crate) async fn catch_up(&self, sources: &Sources<'_>, tracked: &[String]) -> Result<()> {
        let _writing = self.writing.lock().await;
        let followed = followed(sources);
        if !self.usable(&followed, tracked).await? {
            tracing::info!(index = %self.derived.path.display(), "the patient history index is empty, of other silver tables, attributes or encoding, or ahead of silver; rebuilding it from silver");
            self.empty(&followed, Some(tracked))?;
        }
        for source in &followed {
            self.catch_up_with(source, tracked).await?;
        }
        Ok(())
    }

    /// Whether the index holds these tables' records with these attributes and encoding, up
    /// to a sequence the tables have reached: the sources' own, or one after it that a table's
    /// latest commit records (the index ran ahead of this refresh). An index ahead of its table
    /// (one restored from an older copy) is not.
    async fn usable(&self, followed: &[Followed<'_>], tracked: &[String]) -> Result<bool> {
        let d = &self.derived;
        let mut usable = d.meta(TRACKED)? == Some(tracked.join("\u{1f}"))
            && d.meta(FORMAT)?.as_deref() == Some(FORMAT_VERSION);
        for f in followed {
            let id = d.meta(f.id_key)?;
            usable &= id.is_none() || id == table_id(f.table);
            let covered = d.meta_seq(f.covered_key)?;
            if usable && covered > f.upto {
                let mut latest = f.table.clone();
                update(&mut latest, f.name).await?;
                usable &= txn_version(&latest, f.name, f.app).await?.unwrap_or(0) >= covered;
            }
        }
        Ok(usable)
    }

    /// Empties the index and records that it holds no record yet of these attributes, or
    /// (`tracked` `None`) of none: an index left so is rebuilt when next used.
    fn empty(&self, followed: &[Followed<'_>], tracked: Option<&[String]>) -> Result<()> {
        let d = &self.derived;
        let txn = d.db.begin_write().map_err(|e| d.fail(e))?;
        txn.delete_table(RECORDS).map_err(|e| d.fail(e))?;
        txn.delete_table(SOURCES).map_err(|e| d.fail(e))?;
        let tracked = tracked.map(|t| t.join("\u{1f}"));
        let format = tracked.as_ref().map(|_| FORMAT_VERSION);
        let mut values = vec![(TRACKED, tracked.as_deref()), (FORMAT, format)];
        for f in followed {
            values.extend([(f.id_key, None), (f.covered_key, None)]);
        }
        d.set_meta(&txn, &values)?;
        d.commit(txn)
    }

    /// Adds the records of `source` after its covered sequence, up to its `upto`.
    async fn catch_up_with(&self, source: &Followed<'_>, tracked: &[String]) -> Result<()> {
        let covered = self.derived.meta_seq(source.covered_key)?;
        let Some(attributes) = attribute_columns(source.table, tracked) else {
            return Ok(());
        };
        if covered >= source.upto {
            return Ok(());
        }
        if covered == 0 {
            tracing::info!(index = %self.derived.path.display(), table = source.name, "building the patient history index from silver");
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
                self.append(&std::mem::take(&mut pending), true, |_| Ok(()))?;
                rows = 0;
            }
        }
        self.append(&pending, true, |txn| {
            self.cover(txn, std::slice::from_ref(source))
        })?;
        tracing::debug!(
            table = source.name,
            to = source.upto,
            "patient history index caught up"
        );
        Ok(())
    }

    /// Records in `txn` that the index holds the records of `followed` up to their `upto`.
    fn cover(&self, txn: &WriteTransaction, followed: &[Followed<'_>]) -> Result<()> {
        let values: Vec<_> = followed
            .iter()
            .map(|f| (f, f.upto.to_string(), table_id(f.table)))
            .collect();
        let values: Vec<_> = values
            .iter()
            .flat_map(|(f, upto, id)| {
                [
                    (f.covered_key, Some(upto.as_str())),
                    (f.id_key, id.as_deref()),
                ]
            })
            .collect();
        self.derived.set_meta(txn, &values)
    }

    /// Appends `records` in one transaction, with what `also` writes in it. With `read_first`
    /// (a catch-up), the pages of the records held for those patients are read on several
    /// threads first (and nothing kept), so that the single-threaded write finds them in
    /// memory; a fill writes patients the index does not hold.
    fn append(
        &self,
        records: &History,
        read_first: bool,
        also: impl FnOnce(&WriteTransaction) -> Result<()>,
    ) -> Result<()> {
        let d = &self.derived;
        let mut in_key_order: Vec<_> = records
            .iter()
            .map(|(patient, observations)| (patient_key(patient), observations))
            .collect();
        in_key_order.sort_unstable_by_key(|(key, _)| *key);
        if read_first {
            let keys: Vec<_> = in_key_order.iter().map(|(key, _)| *key).collect();
            self.read_held(&keys, |_| ())?;
        }
        let txn = d.db.begin_write().map_err(|e| d.fail(e))?;
        {
            let mut names = txn.open_table(SOURCES).map_err(|e| d.fail(e))?;
            let mut sources = SourceIds {
                next: names.len().map_err(|e| d.fail(e))? as u32,
                ..SourceIds::default()
            };
            for entry in names.iter().map_err(|e| d.fail(e))? {
                let (id, name) = entry.map_err(|e| d.fail(e))?;
                sources.ids.insert(name.value().into(), id.value());
            }
            let mut table = txn.open_table(RECORDS).map_err(|e| d.fail(e))?;
            let mut bytes = Vec::new();
            for (key, observations) in in_key_order {
                bytes.clear();
                if let Some(held) = table.get(key).map_err(|e| d.fail(e))? {
                    bytes.extend_from_slice(held.value());
                }
                for o in observations {
                    encode(o, &mut sources, &mut bytes);
                }
                table.insert(key, bytes.as_slice()).map_err(|e| d.fail(e))?;
            }
            for (id, name) in &sources.added {
                names.insert(id, &**name).map_err(|e| d.fail(e))?;
            }
        }
        also(&txn)?;
        d.commit(txn)
    }

    /// `f` of the encoded records the index holds under each of `keys` (in key order), read on
    /// several threads.
    fn read_held<R: Send>(
        &self,
        keys: &[(u64, &str)],
        f: impl Fn(Option<&[u8]>) -> R + Sync,
    ) -> Result<Vec<R>> {
        let d = &self.derived;
        d.read_spread(keys, |txn, keys| {
            let Some(table) = d.table_in(txn, RECORDS)? else {
                return Ok(keys.iter().map(|_| f(None)).collect());
            };
            keys.iter()
                .map(|key| {
                    let held = table.get(*key).map_err(|e| d.fail(e))?;
                    Ok(f(held.as_ref().map(|h| h.value())))
                })
                .collect()
        })
    }

    /// The held records of `patients` up to the sources' sequences (the index may be ahead).
    fn read(&self, patients: &BTreeSet<String>, silver: &Sources<'_>) -> Result<History> {
        let d = &self.derived;
        let Some(names) = d.read_table(SOURCES)? else {
            return Ok(History::new());
        };
        let mut interner = Interner::default();
        let mut sources = SourceNames::default();
        for entry in names.iter().map_err(|e| d.fail(e))? {
            let (id, name) = entry.map_err(|e| d.fail(e))?;
            sources.0.insert(id.value(), interner.intern(name.value()));
        }
        let mut keys: Vec<_> = patients.iter().map(|p| patient_key(p)).collect();
        keys.sort_unstable();
        let held = self.read_held(&keys, |held| held.map(<[u8]>::to_vec))?;
        let mut history = History::new();
        for ((_, patient), held) in keys.iter().zip(held) {
            let Some(held) = held else {
                continue;
            };
            let mut reader = Reader(&held);
            let mut observations = Vec::new();
            while !reader.0.is_empty() {
                let record =
                    decode(&mut reader, &sources, &mut interner).ok_or_else(|| Error::Index {
                        path: d.path.clone(),
                        message: format!("the records of patient {patient} do not decode"),
                    })?;
                let seq = if record.from_ehr {
                    silver.ehr_upto
                } else {
                    silver.events_upto
                };
                if record.received.0 <= seq {
                    observations.push(record);
                }
            }
            if !observations.is_empty() {
                history.insert(patient.to_string(), observations);
            }
        }
        in_receipt_order(&mut history);
        for observations in history.values_mut() {
            // Records a catch-up repeated after a crash.
            observations.dedup_by(|a, b| a.received == b.received && a.from_ehr == b.from_ehr);
        }
        Ok(history)
    }
}

/// A full build filling the index from the slices it rebuilds: every patient's records are
/// written once, in the slice holding them all.
#[derive(Debug)]
pub(crate) struct Fill<'a> {
    index: &'a HistoryIndex,
    _writing: tokio::sync::MutexGuard<'a, ()>,
}

impl HistoryIndex {
    /// Starts filling the index with all of `sources`; `None` when it already holds exactly
    /// them (then it is left as it is). No catch-up writes the index until the fill ends.
    pub(crate) async fn fill(
        &self,
        sources: &Sources<'_>,
        tracked: &[String],
    ) -> Result<Option<Fill<'_>>> {
        let writing = self.writing.lock().await;
        let followed = followed(sources);
        let mut current = self.usable(&followed, tracked).await?;
        for f in &followed {
            current &= self.derived.meta_seq(f.covered_key)? == f.upto;
        }
        if current {
            return Ok(None);
        }
        self.empty(&followed, None)?;
        Ok(Some(Fill {
            index: self,
            _writing: writing,
        }))
    }
}

impl Fill<'_> {
    /// Adds the records of the patients of `history`, which are all their records.
    pub(crate) fn add(&self, history: &History) -> Result<()> {
        self.index.append(history, false, |_| Ok(()))
    }

    /// Records that the index holds all of `sources`, with these attributes.
    pub(crate) fn finish(self, sources: &Sources<'_>, tracked: &[String]) -> Result<()> {
        let d = &self.index.derived;
        let txn = d.db.begin_write().map_err(|e| d.fail(e))?;
        let tracked = tracked.join("\u{1f}");
        d.set_meta(
            &txn,
            &[
                (TRACKED, Some(tracked.as_str())),
                (FORMAT, Some(FORMAT_VERSION)),
            ],
        )?;
        self.index.cover(&txn, &followed(sources))?;
        d.commit_durably(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::super::history::{self, Kind, Observation};
    use super::*;

    fn record(interner: &mut Interner, source: &str, line: i64) -> Observation {
        Observation {
            received: (line, interner.intern(source), line),
            from_ehr: false,
            kind: Kind::Admit,
            encounter_id: Some(format!("E{line}")),
            hospital_id: 1,
            department: "ICU".into(),
            bed_id: Some(line),
            gender: "F".into(),
            age: Some(40),
            time: line * 1_000,
            received_at: line * 2_000,
            discharge_time: None,
            corrected: false,
            attributes: vec![Some("Medicare".into())],
        }
    }

    fn patients(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|p| p.to_string()).collect()
    }

    #[tokio::test]
    async fn a_full_build_fills_the_index_once_and_an_unfinished_or_older_one_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let root = TableRoot::parse(dir.path().to_str().unwrap()).unwrap();
        // Silver tables not created yet: nothing to catch up from, so what the index answers
        // is what it was filled with.
        let silver = root.open(SILVER_EVENTS).await.unwrap();
        let sources = Sources {
            events: &silver,
            events_upto: 3,
            ehr: &silver,
            ehr_upto: 0,
        };
        let tracked = ["insurance_type".to_string()];
        let mut interner = Interner::default();
        let mut filled = History::new();
        filled.insert(
            "P1".into(),
            vec![
                record(&mut interner, "a.ndjson", 1),
                record(&mut interner, "b.ndjson", 3),
            ],
        );
        filled.insert("P2".into(), vec![record(&mut interner, "a.ndjson", 2)]);
        let index = HistoryIndex::open(&root).unwrap().unwrap();

        let fill = index.fill(&sources, &tracked).await.unwrap().unwrap();
        fill.add(&filled).unwrap();
        fill.finish(&sources, &tracked).unwrap();
        // Holding all of silver already, the next full build leaves it.
        assert!(index.fill(&sources, &tracked).await.unwrap().is_none());
        let read = index
            .load(&sources, &patients(&["P1", "P2", "P3"]), &tracked)
            .await;
        assert_eq!(format!("{:?}", read.unwrap()), format!("{filled:?}"));

        // Another encoding, or a fill that did not finish: emptied and rebuilt from silver.
        {
            let d = &index.derived;
            let txn = d.db.begin_write().unwrap();
            d.set_meta(&txn, &[(FORMAT, Some("1"))]).unwrap();
            txn.commit().unwrap();
        }
        let read = index.load(&sources, &patients(&["P1"]), &tracked).await;
        assert!(read.unwrap().is_empty());
        let fill = index.fill(&sources, &tracked).await.unwrap().unwrap();
        // Not finished: the process stopped here.
        fill.add(&filled).unwrap();
        drop(fill);
        let read = index.load(&sources, &patients(&["P1"]), &tracked).await;
        assert!(read.unwrap().is_empty());
    }

    /// The observations of `history`, as the index and silver both give them.
    fn shown(history: &History) -> (usize, String) {
        (history.values().map(Vec::len).sum(), format!("{history:?}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_index_ahead_of_a_refresh_answers_up_to_its_sequences_but_one_ahead_of_silver_is_rebuilt()
     {
        use crate::producer::{FileSink, Producer, Shape};
        use crate::storage::txn_version;

        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        let mut sink = FileSink::new(&landing, "events", 300).unwrap();
        Producer::new(900, Shape::Adt)
            .with_seed(7)
            .run(&mut sink)
            .unwrap();
        let data = dir.path().join("data");
        let root = TableRoot::parse(data.to_str().unwrap()).unwrap();
        crate::Ingest::new(root.clone(), &landing)
            .with_batch_records(300)
            .run()
            .await
            .unwrap();
        let tracked = ["insurance_type".to_string()];
        let ehr = root.open(SILVER_EHR).await.unwrap();
        let upto = |t: &DeltaTable| {
            let t = t.clone();
            async move {
                txn_version(&t, SILVER_EVENTS, SILVER_APP)
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        let sources = |events, events_upto| Sources {
            events,
            events_upto,
            ehr: &ehr,
            ehr_upto: 0,
        };
        // Silver as a refresh saw it after its first batch, and as it is now.
        let latest = root.open(SILVER_EVENTS).await.unwrap();
        let mut earlier = latest.clone();
        let mut version = 0;
        loop {
            earlier.load_version(version).await.unwrap();
            if txn_version(&earlier, SILVER_EVENTS, SILVER_APP)
                .await
                .unwrap()
                .is_some()
            {
                break;
            }
            version += 1;
        }
        let (latest_upto, earlier_upto) = (upto(&latest).await, upto(&earlier).await);
        assert!(0 < earlier_upto && earlier_upto < latest_upto);
        let everyone: BTreeSet<String> =
            history::load(&sources(&latest, latest_upto), None, &tracked)
                .await
                .unwrap()
                .into_keys()
                .collect();

        // Caught up with the latest commit (a stream's next batch), then read by the refresh
        // of the batch before: its histories end where its silver did, and the index is kept.
        let index = HistoryIndex::open(&root).unwrap().unwrap();
        index
            .catch_up(&sources(&latest, latest_upto), &tracked)
            .await
            .unwrap();
        let read = index
            .load(&sources(&earlier, earlier_upto), &everyone, &tracked)
            .await
            .unwrap();
        let from_silver =
            history::load(&sources(&earlier, earlier_upto), Some(&everyone), &tracked)
                .await
                .unwrap();
        let all = history::load(&sources(&latest, latest_upto), Some(&everyone), &tracked)
            .await
            .unwrap();
        assert_eq!(shown(&read), shown(&from_silver));
        assert!(shown(&read).0 < shown(&all).0);
        assert_eq!(
            index.derived.meta_seq("events_covered").unwrap(),
            latest_upto
        );
        let read = index
            .load(&sources(&latest, latest_upto), &everyone, &tracked)
            .await
            .unwrap();
        assert_eq!(shown(&read), shown(&all));

        // The same index over silver restored from a copy taken after its first batch: ahead
        // of the table, so rebuilt from it.
        let restored = dir.path().join("restored");
        let copied = std::process::Command::new("cp")
            .args(["-a"])
            .arg(&data)
            .arg(&restored)
            .status()
            .unwrap();
        assert!(copied.success());
        let log = restored.join(SILVER_EVENTS).join("_delta_log");
        for later in version + 1..=latest.version().unwrap() {
            std::fs::remove_file(log.join(format!("{later:020}.json"))).unwrap();
        }
        let root = TableRoot::parse(restored.to_str().unwrap()).unwrap();
        let index = HistoryIndex::open(&root).unwrap().unwrap();
        index
            .catch_up(&sources(&latest, latest_upto), &tracked)
            .await
            .unwrap();
        let silver = root.open(SILVER_EVENTS).await.unwrap();
        assert_eq!(upto(&silver).await, earlier_upto);
        let read = index
            .load(&sources(&silver, earlier_upto), &everyone, &tracked)
            .await
            .unwrap();
        assert_eq!(shown(&read), shown(&from_silver));
        assert_eq!(
            index.derived.meta_seq("events_covered").unwrap(),
            earlier_upto
        );
    }
}
