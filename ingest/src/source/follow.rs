//! Follow mode for the landing folder: new files and lines appended to existing ones are read
//! as they arrive. Only complete lines (ended by `\n`) are read, so a line being written is
//! taken once its end is there. Each file's consumed byte offset is the same Delta application
//! transaction as a one-shot ingest's (`landing:<path>`), so follow mode and one-shot ingests
//! can take turns on one folder.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::landing::{LandingFile, LineReader, discover};
use super::{Follow, Ownership, Part, PositionLog, Record, Resume, Settled};
use crate::error::Result;

/// How often the folder is listed again when nothing new was read.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// One followed file.
#[derive(Debug)]
struct Tail {
    /// The file's position id.
    app_id: String,
    /// Offset read up to (handed over, maybe not yet committed).
    pos: u64,
    /// Open at `pos`, or `None` until there is something to read.
    reader: Option<LineReader>,
}

/// A landing folder (or one file) followed as it grows.
#[derive(Debug)]
pub struct FollowLanding {
    from: PathBuf,
    log: PositionLog,
    tails: BTreeMap<PathBuf, Tail>,
    ownership: Ownership,
    line: Vec<u8>,
}

impl FollowLanding {
    /// Follows `from`, starting every file at the offset the Delta log holds for it.
    pub fn new(from: impl Into<PathBuf>, log: PositionLog) -> Self {
        Self {
            from: from.into(),
            log,
            tails: BTreeMap::new(),
            ownership: Ownership::default(),
            line: Vec::new(),
        }
    }

    /// Starts following the files not seen before, at their logged offsets.
    fn discover(&mut self) -> Result<Vec<LandingFile>> {
        let files = discover(&self.from)?;
        let new: Vec<&LandingFile> = files
            .iter()
            .filter(|f| !self.tails.contains_key(&f.path))
            .collect();
        if !new.is_empty() {
            let ids: Vec<String> = new.iter().map(|f| f.app_id()).collect();
            let logged = self.log.read(&ids)?;
            for ((file, app_id), logged) in new.iter().zip(ids).zip(logged) {
                let pos = logged.unwrap_or(0).max(0) as u64;
                tracing::info!(file = %file.path.display(), from_byte = pos, "following");
                let tail = Tail {
                    app_id,
                    pos,
                    reader: None,
                };
                self.tails.insert(file.path.clone(), tail);
            }
        }
        Ok(files)
    }

    /// Reads the complete lines `file` has past its tail, at most `room`.
    fn read(&mut self, file: &LandingFile, room: usize) -> Result<Option<Part>> {
        let Some(tail) = self.tails.get_mut(&file.path) else {
            return Ok(None);
        };
        if file.len < tail.pos {
            tracing::warn!(
                file = %file.path.display(),
                len = file.len,
                consumed = tail.pos,
                "landing file shrank; a landing file must only grow (its new bytes are not read)"
            );
            return Ok(None);
        }
        if file.len == tail.pos {
            return Ok(None);
        }
        let reader = match tail.reader.as_mut() {
            Some(r) => r,
            None => tail.reader.insert(LineReader::open(file, tail.pos)?),
        };
        let start = tail.pos;
        let received_at = chrono::Utc::now().timestamp_micros();
        let mut records = Vec::new();
        while records.len() < room {
            let Some(line) = reader.next_complete_into(&mut self.line)? else {
                break;
            };
            records.push(Record {
                line,
                received_at,
                produced_at: None,
                raw: self.line.clone(),
            });
        }
        tail.pos = reader.offset;
        if records.is_empty() {
            return Ok(None);
        }
        Ok(Some(Part {
            app_id: tail.app_id.clone(),
            resume: Resume::At(start as i64),
            position: tail.pos as i64,
            source: file.path.display().to_string(),
            partition: None,
            records,
        }))
    }
}

impl Follow for FollowLanding {
    fn poll(&mut self, wait: Duration, room: usize) -> Result<Vec<Part>> {
        let deadline = Instant::now() + wait;
        loop {
            let mut parts = Vec::new();
            if room > 0 {
                let mut left = room;
                for file in self.discover()? {
                    if left == 0 {
                        break;
                    }
                    if let Some(part) = self.read(&file, left)? {
                        left -= part.records.len();
                        parts.push(part);
                    }
                }
            }
            let now = Instant::now();
            if !parts.is_empty() || now >= deadline {
                return Ok(parts);
            }
            std::thread::sleep(IDLE_POLL.min(deadline - now));
        }
    }

    fn settle(&mut self, settled: &[Settled]) -> Result<()> {
        for s in settled.iter().filter(|s| !s.committed) {
            // Another writer consumed this file meanwhile: go on from where the log says.
            if let Some(tail) = self.tails.values_mut().find(|t| t.app_id == s.app_id) {
                tail.pos = s.logged.unwrap_or(0).max(0) as u64;
                tail.reader = None;
            }
        }
        Ok(())
    }

    fn ownership(&self) -> Ownership {
        self.ownership.clone()
    }
}
