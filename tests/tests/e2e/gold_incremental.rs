//! An incremental gold history equals a full rebuild of the same input: 50 batches over a
//! history of more than 100k stays, with transfers, late and lost events, stale stays revived
//! by later records, as-of times moving forward and a new attribute arriving part-way.

use std::path::Path;

use patientflow_e2e::{ingest, parse_json, produce, scalar};

use crate::gold_scale::{assert_same, copy_root, refresh_at, snapshot_without};

const UNTIL: &str = "2026-11-20T00:00:00Z";
const BATCHES: usize = 50;

fn refresh(data: &Path, as_of: &str, extra: &[&str]) -> serde_json::Value {
    parse_json(&refresh_at(data, as_of, extra))
}

/// The as-of time of batch `i` (0: the first files): an hour later per batch, the last one
/// six hours after the history's end (`UNTIL`, 2026-11-20T00:00Z).
fn as_of(i: usize) -> String {
    let hour = 20 * 24 + 6 - (BATCHES - i) as i64; // hours since the day before 2026-11-01
    format!("2026-11-{:02}T{:02}:00:00Z", hour / 24, hour % 24)
}

#[test]
fn fifty_incremental_refreshes_equal_a_full_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let produced = dir.path().join("produced");
    let ledger = produce(
        &produced,
        340_000,
        &[
            "--seed",
            "17",
            "--until",
            UNTIL,
            "--records-per-file",
            "6500",
        ],
    );
    assert!(ledger["stays"].as_u64().unwrap() > 100_000, "{ledger}");
    let mut files: Vec<_> = std::fs::read_dir(&produced)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    assert!(files.len() > BATCHES, "{} files", files.len());
    let (first, batches) = files.split_at(files.len() - BATCHES);

    // The first files at once, then one file per batch, each followed by a refresh at an
    // as-of time an hour later than the one before.
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let inc = dir.path().join("inc");
    let land = |file: &Path| {
        std::fs::copy(file, landing.join(file.file_name().unwrap())).unwrap();
    };
    first.iter().for_each(|f| land(f));
    ingest(&landing, &inc, &["--no-gold"]);
    // A full build in slices, which fills the patient history index the batches then read.
    let out = refresh(&inc, &as_of(0), &["--rows-per-slice", "4000"]);
    assert!(out["slices"].as_u64().unwrap() > 1, "{out}");
    // The stays of the history's latest month, which a batch's new events mostly change.
    let month = scalar(
        &inc,
        "gold/fact_admission",
        "SELECT count(*) FROM t WHERE admission_month = (SELECT max(admission_month) FROM t)",
    ) as u64;
    let admissions = inc.join("gold/fact_admission");
    let (mut rebuilt, mut written) = (0, Vec::new());
    for (i, file) in batches.iter().enumerate() {
        land(file);
        let out = ingest(&landing, &inc, &["--as-of", &as_of(i + 1)]);
        assert_eq!(out["gold"]["full"], false, "batch {i}: {out}");
        rebuilt += out["gold"]["patients"].as_u64().unwrap();
        written.push(added_rows(&admissions));
    }
    assert!(rebuilt > 10_000, "the batches rebuilt {rebuilt} patients");
    // A batch's commit writes the stays it changed and those sharing a file with them (the
    // file of the open stays, about the census; every eighth batch or so, the small files
    // merged), where replacing whole months wrote at least the latest month's every stay
    // (measured: 3.2k a batch, the month 6.3k of a 100k-stay history).
    written.sort_unstable();
    assert!(
        written[BATCHES / 2] < month * 2 / 3,
        "a median batch wrote {} stay rows; the latest month has {month}",
        written[BATCHES / 2]
    );

    // A full rebuild of the same silver (copied: the future-time correction depends on when
    // records reached bronze) at the last as-of time.
    let full = dir.path().join("full");
    copy_root(&inc, &full);
    let out = refresh(&full, &as_of(BATCHES), &["--full"]);
    assert_eq!(out["full"], true, "{out}");
    assert!(out["stale_stays"].as_u64().unwrap() > 0, "{out}");
    // Equal row by row, but for `as_of`: the as-of time of the refresh that last rebuilt a
    // stay or encounter, which for a patient untouched since batch 7 is batch 7's.
    assert_same(
        &snapshot_without(&inc, "as_of"),
        &snapshot_without(&full, "as_of"),
        "50 incremental refreshes vs a full rebuild",
    );
}

/// The rows the last commit of the Delta table at `table` added (its `add` actions' record
/// counts).
fn added_rows(table: &Path) -> u64 {
    let last = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .unwrap();
    std::fs::read_to_string(last)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let action = parse_json(line);
            let stats = action["add"]["stats"].as_str()?;
            parse_json(stats)["numRecords"].as_u64()
        })
        .sum()
}
