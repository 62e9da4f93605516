//! Where the producer sends records. Files now; a Kafka sink implements the same trait.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A destination for produced records, one JSON text (or deliberately broken text) each.
pub trait Sink {
    /// Sends one record.
    fn send(&mut self, record: &[u8]) -> Result<()>;
    /// Flushes everything; returns where the records went (file paths, topic names).
    fn finish(&mut self) -> Result<Vec<String>>;
}

/// Writes NDJSON files into a landing folder, `records_per_file` lines each. Each file is
/// written under a hidden name and renamed when complete, so an ingest never sees half a file.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    prefix: String,
    records_per_file: usize,
    current: Option<(BufWriter<File>, PathBuf, PathBuf)>,
    in_current: usize,
    written: Vec<String>,
    live: bool,
}

impl FileSink {
    /// A sink writing `<prefix>-NNNNNN.ndjson` files into `dir` (created if missing).
    pub fn new(dir: &Path, prefix: &str, records_per_file: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            records_per_file: records_per_file.max(1),
            current: None,
            in_current: 0,
            written: Vec::new(),
            live: false,
        })
    }

    /// Writes each file under its own name and flushes every record as it is sent, so a
    /// follower (`ingest --follow`) sees records as they come, not files once complete.
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some((mut w, tmp, fin)) = self.current.take() {
            w.flush().map_err(|e| Error::io(&tmp, e))?;
            if tmp != fin {
                std::fs::rename(&tmp, &fin).map_err(|e| Error::io(&fin, e))?;
            }
            self.written.push(fin.display().to_string());
        }
        self.in_current = 0;
        Ok(())
    }
}

impl Sink for FileSink {
    fn send(&mut self, record: &[u8]) -> Result<()> {
        if self.in_current >= self.records_per_file {
            self.close_current()?;
        }
        if self.current.is_none() {
            // Continue numbering after files already in the folder.
            let mut n = self.written.len() + 1;
            let name = loop {
                let name = format!("{}-{n:06}.ndjson", self.prefix);
                if !self.dir.join(&name).exists() {
                    break name;
                }
                n += 1;
            };
            let fin = self.dir.join(&name);
            let tmp = if self.live {
                fin.clone()
            } else {
                self.dir.join(format!(".{name}.partial"))
            };
            let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            self.current = Some((BufWriter::with_capacity(1 << 20, file), tmp, fin));
        }
        if let Some((w, tmp, _)) = self.current.as_mut() {
            w.write_all(record)
                .and_then(|()| w.write_all(b"\n"))
                .and_then(|()| if self.live { w.flush() } else { Ok(()) })
                .map_err(|e| Error::io(tmp.as_path(), e))?;
        }
        self.in_current += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<String>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.written))
    }
}

/// Sends through `inner` at most `rate` records a second, on average since the first.
pub struct Paced {
    inner: Box<dyn Sink>,
    rate: f64,
    started: Option<std::time::Instant>,
    sent: u64,
}

impl std::fmt::Debug for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced")
            .field("rate", &self.rate)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Paced {
    /// `inner` held to `rate` records a second.
    pub fn new(inner: Box<dyn Sink>, rate: f64) -> Self {
        Self {
            inner,
            rate: rate.max(1e-3),
            started: None,
            sent: 0,
        }
    }
}

impl Sink for Paced {
    fn send(&mut self, record: &[u8]) -> Result<()> {
        let started = *self.started.get_or_insert_with(std::time::Instant::now);
        let due = started + std::time::Duration::from_secs_f64(self.sent as f64 / self.rate);
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        self.sent += 1;
        self.inner.send(record)
    }

    fn finish(&mut self) -> Result<Vec<String>> {
        self.inner.finish()
    }
}
