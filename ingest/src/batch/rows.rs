//! Daily batch files split into raw rows (for bronze) and raw rows parsed into fields.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// One row of a batch file: its 1-based line (CSV) or row number (Parquet) and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawRow {
    pub(crate) line: i64,
    pub(crate) raw: Vec<u8>,
}

/// Whether a file is Parquet (by extension); anything else is read as CSV.
pub(crate) fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// The rows of a CSV file byte for byte (the header is row 1), or of a Parquet file as one
/// JSON object per row.
pub(crate) fn split(path: &Path, bytes: &[u8]) -> Result<Vec<RawRow>> {
    if is_parquet(path) {
        return parquet_rows(path, bytes);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut rows = Vec::new();
    // Newlines before `counted`, for line numbers.
    let (mut counted, mut newlines) = (0usize, 0i64);
    loop {
        let start = usize::try_from(reader.position().byte()).unwrap_or(bytes.len());
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| Error::InvalidInput {
                path: path.to_path_buf(),
                reason: format!("CSV: {e}"),
            })?;
        if !more {
            break;
        }
        let end = usize::try_from(reader.position().byte())
            .unwrap_or(bytes.len())
            .min(bytes.len());
        // A record's position starts at the previous record's line terminator.
        let mut from = start.min(end);
        while from < end && matches!(bytes[from], b'\r' | b'\n') {
            from += 1;
        }
        newlines += bytes[counted..from].iter().filter(|b| **b == b'\n').count() as i64;
        counted = from;
        let raw = &bytes[from..end];
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        rows.push(RawRow {
            line: newlines + 1,
            raw: raw.to_vec(),
        });
    }
    Ok(rows)
}

fn parquet_rows(path: &Path, bytes: &[u8]) -> Result<Vec<RawRow>> {
    let invalid = |reason: String| Error::InvalidInput {
        path: path.to_path_buf(),
        reason,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .and_then(|b| b.build())
        .map_err(|e| invalid(format!("Parquet: {e}")))?;
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| invalid(format!("Parquet: {e}")))?;
        let schema = batch.schema();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("Parquet: {e}")))?;
        for i in 0..batch.num_rows() {
            let mut object = serde_json::Map::new();
            for (field, (column, f)) in schema
                .fields()
                .iter()
                .zip(batch.columns().iter().zip(&formatters))
            {
                if column.is_valid(i) {
                    object.insert(field.name().clone(), f.value(i).to_string().into());
                }
            }
            rows.push(RawRow {
                line: rows.len() as i64 + 1,
                raw: serde_json::Value::Object(object).to_string().into_bytes(),
            });
        }
    }
    Ok(rows)
}

/// A raw row's fields by lower-cased, trimmed name; `None` when it cannot be read (invalid
/// UTF-8, another field count than the header, not a JSON object).
pub(crate) fn fields(raw: &[u8], header: Option<&[String]>) -> Option<BTreeMap<String, String>> {
    match header {
        None => {
            let value: serde_json::Value = serde_json::from_slice(raw).ok()?;
            let object = value.as_object()?;
            Some(
                object
                    .iter()
                    .filter_map(|(k, v)| {
                        let text = match v {
                            serde_json::Value::Null => return None,
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        Some((k.trim().to_lowercase(), text))
                    })
                    .collect(),
            )
        }
        Some(names) => {
            let record = csv_record(raw)?;
            (record.len() == names.len()).then(|| {
                names
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_string))
                    .collect()
            })
        }
    }
}

/// The column names of a CSV header row.
pub(crate) fn header(raw: &[u8]) -> Option<Arc<[String]>> {
    csv_record(raw).map(|r| r.iter().map(|n| n.trim().to_lowercase()).collect())
}

fn csv_record(raw: &[u8]) -> Option<csv::StringRecord> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(raw);
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Some(record),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_their_bytes_and_lines() {
        let text = b"a,b\r\n1,\"x\ny\"\n\n2,z";
        let rows = split(Path::new("f.csv"), text).unwrap();
        let raws: Vec<_> = rows
            .iter()
            .map(|r| (r.line, String::from_utf8_lossy(&r.raw).into_owned()))
            .collect();
        assert_eq!(
            raws,
            vec![
                (1, "a,b".into()),
                (2, "1,\"x\ny\"".into()),
                (5, "2,z".into())
            ]
        );
        let h = header(&rows[0].raw).unwrap();
        let f = fields(&rows[1].raw, Some(&h)).unwrap();
        assert_eq!(f["b"], "x\ny");
        assert!(fields(b"1,2,3", Some(&h)).is_none());
        assert!(fields(b"[1]", None).is_none());
        assert_eq!(
            fields(br#"{"Age": 5, "x": null}"#, None).unwrap()["age"],
            "5"
        );
    }
}
