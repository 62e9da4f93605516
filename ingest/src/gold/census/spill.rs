//! Segments kept on disk by the month they count in, so that the full build's census holds one
//! month's accumulators at a time, whatever span the history has (26 years at 10M stays would
//! be 220 MB of accumulators held at once).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::Occupancy;
use crate::error::{Error, Result};
use crate::storage::TableRoot;

/// One spilled segment: department position, hospital, start, end, stale time, flags.
const RECORD: usize = 4 + 4 + 8 + 8 + 8 + 1;
/// Written for an absent end or stale time.
const NONE: i64 = i64::MIN;

/// Spilled segments, a file per month in a folder removed on drop.
#[derive(Debug)]
pub(super) struct MonthFiles {
    dir: tempfile::TempDir,
    writers: BTreeMap<i64, BufWriter<File>>,
}

impl MonthFiles {
    /// An empty set of month files in a new folder of `scratch`.
    pub(super) fn new(scratch: &Path) -> Result<Self> {
        let dir = TableRoot::scratch_subdir(scratch, "gold-census-")?;
        Ok(Self {
            dir,
            writers: BTreeMap::new(),
        })
    }

    /// Keeps the segment `o` of the department at position `d` for the month starting on day
    /// `month`.
    pub(super) fn push(&mut self, month: i64, d: usize, o: &Occupancy) -> Result<()> {
        let writer = match self.writers.entry(month) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let path = self.dir.path().join(month.to_string());
                let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
                e.insert(BufWriter::new(file))
            }
        };
        let mut record = [0u8; RECORD];
        record[0..4].copy_from_slice(&(d as u32).to_le_bytes());
        record[4..8].copy_from_slice(&o.hospital_id.to_le_bytes());
        record[8..16].copy_from_slice(&o.start.to_le_bytes());
        record[16..24].copy_from_slice(&o.end.unwrap_or(NONE).to_le_bytes());
        record[24..32].copy_from_slice(&o.stale_since.unwrap_or(NONE).to_le_bytes());
        record[32] = u8::from(o.starts_stay) | u8::from(o.ends_stay) << 1;
        writer
            .write_all(&record)
            .map_err(|e| Error::io(self.dir.path(), e))
    }

    /// The segments kept for the month starting on day `month` (their department by position,
    /// their `department` left empty), its file then removed.
    pub(super) fn take(&mut self, month: i64) -> Result<Vec<(usize, Occupancy)>> {
        let Some(writer) = self.writers.remove(&month) else {
            return Ok(Vec::new());
        };
        let path = self.dir.path().join(month.to_string());
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        drop(file);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut reader = BufReader::new(file);
        let mut out = Vec::new();
        let mut record = [0u8; RECORD];
        loop {
            match reader.read_exact(&mut record) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(Error::io(&path, e)),
            }
            let i64_at =
                |at: usize| i64::from_le_bytes(record[at..at + 8].try_into().unwrap_or_default());
            let optional = |v: i64| (v != NONE).then_some(v);
            let d = u32::from_le_bytes(record[0..4].try_into().unwrap_or_default()) as usize;
            out.push((
                d,
                Occupancy {
                    hospital_id: i32::from_le_bytes(record[4..8].try_into().unwrap_or_default()),
                    department: String::new(),
                    start: i64_at(8),
                    end: optional(i64_at(16)),
                    stale_since: optional(i64_at(24)),
                    starts_stay: record[32] & 1 != 0,
                    ends_stay: record[32] & 2 != 0,
                },
            ));
        }
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_come_back_as_they_went_by_month() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = MonthFiles::new(dir.path()).unwrap();
        let open = Occupancy {
            hospital_id: 7,
            department: "ICU".into(),
            start: -5,
            end: None,
            starts_stay: true,
            ends_stay: false,
            stale_since: Some(1_000),
        };
        let closed = Occupancy {
            end: Some(i64::MAX - 1),
            stale_since: None,
            starts_stay: false,
            ends_stay: true,
            ..open.clone()
        };
        files.push(31, 3, &open).unwrap();
        files.push(31, 4, &closed).unwrap();
        files.push(59, 3, &open).unwrap();

        let without_name = |o: &Occupancy| Occupancy {
            department: String::new(),
            ..o.clone()
        };
        assert_eq!(
            files.take(31).unwrap(),
            vec![(3, without_name(&open)), (4, without_name(&closed))]
        );
        assert_eq!(files.take(31).unwrap(), vec![]);
        assert_eq!(files.take(59).unwrap(), vec![(3, without_name(&open))]);
        assert_eq!(files.take(90).unwrap(), vec![]);
    }
}
