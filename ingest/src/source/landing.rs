//! The landing folder: NDJSON files, one record per line.
//!
//! Files are read in path order. The consumed byte offset of each file is kept as a Delta
//! application transaction in bronze (`app_id = landing:<absolute path>`), so a file that
//! grows is read on from where it stopped and a file read before adds nothing.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Files whose names end in one of these are records; others (and names starting with `_` or
/// `.`, like the producer's ledger and partial files) are ignored.
const EXTENSIONS: [&str; 3] = ["ndjson", "jsonl", "json"];

/// The largest single record accepted; a longer line stops the ingest with an error rather
/// than exhaust memory.
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// One landing file to read.
#[derive(Debug, Clone)]
pub struct LandingFile {
    /// Canonical absolute path.
    pub path: PathBuf,
    /// Size when discovered.
    pub len: u64,
}

impl LandingFile {
    /// Application-transaction id recording this file's consumed byte offset.
    pub fn app_id(&self) -> String {
        format!("landing:{}", self.path.display())
    }
}

/// Lists the record files of a landing folder (recursively, sorted), or the one file given.
pub fn discover(from: &Path) -> Result<Vec<LandingFile>> {
    let meta = std::fs::metadata(from).map_err(|e| Error::io(from, e))?;
    let mut paths = Vec::new();
    if meta.is_file() {
        paths.push(from.to_path_buf());
    } else {
        walk(from, &mut paths)?;
    }
    let mut files = paths
        .into_iter()
        .map(|p| {
            let path = std::fs::canonicalize(&p).map_err(|e| Error::io(&p, e))?;
            let len = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            Ok(LandingFile { path, len })
        })
        .collect::<Result<Vec<_>>>()?;
    // Canonical path order is also the order silver re-reads bronze in (source, line).
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|ext| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads the lines of one file from a byte offset, tracking line numbers.
#[derive(Debug)]
pub struct LineReader {
    reader: BufReader<File>,
    path: PathBuf,
    /// The start of a line still being written (follow mode), not yet returned.
    partial: Vec<u8>,
    /// Byte offset just past the last line returned.
    pub offset: u64,
    /// 1-based number of the next line.
    pub next_line: i64,
}

impl LineReader {
    /// Opens `file` positioned at `offset`, which must be the start of a line (as recorded by
    /// an earlier ingest).
    pub fn open(file: &LandingFile, offset: u64) -> Result<Self> {
        let path = &file.path;
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        // Recover the line number at `offset` by counting newlines before it.
        let mut newlines = 0i64;
        if offset > 0 {
            let mut counted = BufReader::with_capacity(1 << 20, (&mut f).take(offset));
            loop {
                let buf = counted.fill_buf().map_err(|e| Error::io(path, e))?;
                if buf.is_empty() {
                    break;
                }
                newlines += buf.iter().filter(|b| **b == b'\n').count() as i64;
                let n = buf.len();
                counted.consume(n);
            }
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| Error::io(path, e))?;
        }
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, f),
            path: path.clone(),
            partial: Vec::new(),
            offset,
            next_line: newlines + 1,
        })
    }

    /// Reads the next line into `buf` (without its `\n`); returns its line number, or `None`
    /// at end of file. A last line without `\n` is a record too.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<i64>> {
        buf.clear();
        let n = self.read_line(buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        Ok(Some(self.advance(n)))
    }

    /// Reads the next complete line (ended by `\n`) into `buf`, without its `\n`; returns
    /// its line number, or `None` when the file ends before the line does. The part of a line
    /// still being written is kept and completed by a later call, once it has been appended.
    pub fn next_complete_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<i64>> {
        buf.clear();
        buf.append(&mut self.partial);
        self.read_line(buf)?;
        if buf.last() != Some(&b'\n') {
            std::mem::swap(buf, &mut self.partial);
            return Ok(None);
        }
        buf.pop();
        Ok(Some(self.advance(buf.len() + 1)))
    }

    /// Appends up to and including the next `\n` to `buf`; returns the bytes read.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        let limit = (MAX_RECORD_BYTES + 1).saturating_sub(buf.len()) as u64;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', buf)
            .map_err(|e| Error::io(&self.path, e))?;
        if buf.len() > MAX_RECORD_BYTES && buf.last() != Some(&b'\n') {
            return Err(Error::InvalidInput {
                path: self.path.clone(),
                reason: format!(
                    "line {} is longer than {MAX_RECORD_BYTES} bytes; split the file or \
                     fix the producer",
                    self.next_line
                ),
            });
        }
        Ok(n)
    }

    /// Moves past a line of `n` bytes; returns its number.
    fn advance(&mut self, n: usize) -> i64 {
        self.offset += n as u64;
        let line = self.next_line;
        self.next_line += 1;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_and_resumes_at_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ndjson");
        std::fs::write(&path, b"{\"a\":1}\n\n{\"b\":2}\r\n{\"trunc").unwrap();
        std::fs::write(dir.path().join("_ledger.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let files = discover(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        let mut r = LineReader::open(&files[0], 0).unwrap();
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while let Some(n) = r.next_into(&mut buf).unwrap() {
            lines.push((n, String::from_utf8(buf.clone()).unwrap(), r.offset));
        }
        assert_eq!(
            lines,
            vec![
                (1, "{\"a\":1}".into(), 8),
                (2, "".into(), 9),
                (3, "{\"b\":2}\r".into(), 18),
                (4, "{\"trunc".into(), 25)
            ]
        );
        let mut r = LineReader::open(&files[0], 9).unwrap();
        assert_eq!(r.next_into(&mut buf).unwrap(), Some(3));
    }

    #[test]
    fn follow_mode_waits_for_the_end_of_a_line() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ndjson");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\"").unwrap();
        let files = discover(dir.path()).unwrap();
        let mut r = LineReader::open(&files[0], 0).unwrap();
        let mut buf = Vec::new();
        assert_eq!(r.next_complete_into(&mut buf).unwrap(), Some(1));
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(r.next_complete_into(&mut buf).unwrap(), None);
        assert_eq!(r.offset, 8);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b":2}\n").unwrap();
        assert_eq!(r.next_complete_into(&mut buf).unwrap(), Some(2));
        assert_eq!(buf, b"{\"b\":2}");
        assert_eq!(r.offset, 16);
        assert_eq!(r.next_complete_into(&mut buf).unwrap(), None);
    }

    #[test]
    fn missing_path_is_a_clear_error() {
        let err = discover(Path::new("/definitely/not/here")).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");
    }
}
