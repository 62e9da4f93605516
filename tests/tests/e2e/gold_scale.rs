//! Gold at scale: the census against an independent recomputation over ≥100k stays, and a
//! refresh killed part-way then re-run ending in the same tables as an uninterrupted one.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use deltalake::arrow::array::{Array, Int32Array, StringArray, TimestampMicrosecondArray};
use patientflow_e2e::{ingest, path, patientflow, produce, query, rows, run_ok, scalar};

const AS_OF: &str = "2026-11-20T06:30:00Z";
const UNTIL: &str = "2026-11-20T00:00:00Z";
const HOUR: i64 = 3_600_000_000;

pub(crate) const GOLD: [&str; 7] = [
    "gold/dim_department",
    "gold/dim_patient",
    "gold/dim_date",
    "gold/fact_admission",
    "gold/fact_stay_segment",
    "gold/fact_census_hourly",
    "gold/fact_ed_visit",
];

fn column<'a, T: 'static>(b: &'a deltalake::arrow::array::RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .unwrap_or_else(|| panic!("column {name}"))
}

#[test]
fn census_equals_an_independent_recomputation_over_100k_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, data) = (dir.path().join("landing"), dir.path().join("data"));
    produce(
        &landing.join("adt"),
        300_000,
        &["--shape", "adt", "--seed", "5", "--until", UNTIL],
    );
    produce(
        &landing.join("flat"),
        40_000,
        &["--shape", "flat", "--seed", "6", "--until", UNTIL],
    );
    ingest(&landing, &data, &["--as-of", AS_OF]);
    let stays = scalar(&data, "gold/fact_admission", "select count(*) from t");
    assert!(stays >= 100_000, "only {stays} stays");
    assert!(scalar(&data, "gold/fact_admission", "select sum(transfers) from t") > 1_000);

    // Census by a sweep over the segments: started by the hour minus ended by the hour, a stale
    // stay ending when it went stale (contract §5.1).
    type Key = (i32, String);
    let mut starts: HashMap<Key, Vec<i64>> = HashMap::new();
    let mut ends: HashMap<Key, Vec<i64>> = HashMap::new();
    for b in query(&data, &[("s", "gold/fact_stay_segment")], "select * from s") {
        let h = column::<Int32Array>(&b, "hospital_id");
        let d = deltalake::arrow::compute::cast(
            b.column_by_name("department").unwrap(),
            &deltalake::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let d = d.as_any().downcast_ref::<StringArray>().unwrap();
        let s = column::<TimestampMicrosecondArray>(&b, "segment_start");
        let e = column::<TimestampMicrosecondArray>(&b, "segment_end");
        let stale = column::<TimestampMicrosecondArray>(&b, "stale_since");
        for i in 0..b.num_rows() {
            let key = (h.value(i), d.value(i).to_string());
            starts.entry(key.clone()).or_default().push(s.value(i));
            if stale.is_valid(i) {
                ends.entry(key).or_default().push(stale.value(i));
            } else if e.is_valid(i) {
                ends.entry(key).or_default().push(e.value(i));
            }
        }
    }
    for v in starts.values_mut().chain(ends.values_mut()) {
        v.sort_unstable();
    }
    let upto = |v: Option<&Vec<i64>>, t: i64| v.map_or(0, |v| v.partition_point(|x| *x <= t));
    let mut checked = 0;
    let mut nonzero = 0;
    for b in query(
        &data,
        &[("c", "gold/fact_census_hourly")],
        "select hour_start, hospital_id, department, census from c",
    ) {
        let t = column::<TimestampMicrosecondArray>(&b, "hour_start");
        let h = column::<Int32Array>(&b, "hospital_id");
        let d = deltalake::arrow::compute::cast(
            b.column_by_name("department").unwrap(),
            &deltalake::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let d = d.as_any().downcast_ref::<StringArray>().unwrap();
        let c = column::<Int32Array>(&b, "census");
        for i in 0..b.num_rows() {
            let key = (h.value(i), d.value(i).to_string());
            let at = t.value(i);
            let expected = upto(starts.get(&key), at) - upto(ends.get(&key), at);
            assert_eq!(c.value(i) as usize, expected, "census of {key:?} at {at}");
            checked += 1;
            nonzero += usize::from(expected > 0);
        }
    }
    assert!(
        checked > 10_000 && nonzero > checked / 2,
        "{checked} rows, {nonzero} non-zero"
    );
    assert_eq!(t_mod(&data), 0, "every census row starts on the hour");

    // Admissions and discharges per hour and department equal counts over fact_admission.
    let tables = [
        ("f", "gold/fact_admission"),
        ("c", "gold/fact_census_hourly"),
    ];
    for (time, dept) in [
        ("admission_time", "department"),
        ("discharge_time", "discharge_department"),
    ] {
        let measure = if time == "admission_time" {
            "admissions"
        } else {
            "discharges"
        };
        let sql = format!(
            "with a as (select date_trunc('hour', {time}) as h, hospital_id, {dept} as department, count(*) as n \
               from f where {time} is not null and {time} <= timestamp '{AS_OF}' group by 1, 2, 3) \
             select count(*) from a left join c on c.hour_start = a.h and c.hospital_id = a.hospital_id \
               and c.department = a.department where c.{measure} is distinct from a.n"
        );
        assert_eq!(rows(&data, &tables, &sql), vec!["0"], "{measure}");
        let total = format!(
            "select (select sum({measure}) from c) - (select count(*) from f where {time} <= timestamp '{AS_OF}')"
        );
        assert_eq!(rows(&data, &tables, &total), vec!["0"], "{measure} total");
    }
}

fn t_mod(data: &Path) -> i64 {
    scalar(
        data,
        "gold/fact_census_hourly",
        &format!(
            "select count(*) from t where cast(to_unixtime(hour_start) as bigint) % {} <> 0",
            HOUR / 1_000_000
        ),
    )
}

/// Every gold table's rows, sorted, as text.
fn snapshot(data: &Path) -> Vec<(String, Vec<String>)> {
    snapshot_without(data, "")
}

/// Every gold table's rows without the column `excluded`, sorted, as text.
pub(crate) fn snapshot_without(data: &Path, excluded: &str) -> Vec<(String, Vec<String>)> {
    GOLD.iter()
        .map(|t| {
            let first = query(data, &[("t", t)], "select * from t limit 1");
            let columns: Vec<String> = first[0]
                .schema()
                .fields()
                .iter()
                .map(|f| f.name())
                .filter(|name| *name != excluded)
                .map(|name| format!("\"{name}\""))
                .collect();
            let sql = format!("select {} from t", columns.join(", "));
            let mut r = rows(data, &[("t", t)], &sql);
            r.sort_unstable();
            (t.to_string(), r)
        })
        .collect()
}

/// Asserts two snapshots are equal, showing a few differing rows per table.
pub(crate) fn assert_same(
    got: &[(String, Vec<String>)],
    want: &[(String, Vec<String>)],
    context: &str,
) {
    for ((table, a), (_, b)) in got.iter().zip(want) {
        if a != b {
            let (set_a, set_b): (HashSet<_>, HashSet<_>) = (a.iter().collect(), b.iter().collect());
            let only_a: Vec<_> = a.iter().filter(|r| !set_b.contains(r)).take(3).collect();
            let only_b: Vec<_> = b.iter().filter(|r| !set_a.contains(r)).take(3).collect();
            panic!(
                "{context}: {table} differs ({} vs {} rows)\n got only: {only_a:#?}\n want only: {only_b:#?}",
                a.len(),
                b.len()
            );
        }
    }
}

/// Copies a table root (silver included), so two refreshes start from the same silver: the
/// future-time correction depends on when records reached bronze.
pub(crate) fn copy_root(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts a refresh with `extra`, kills it after `delay_ms`, and runs it again to completion.
fn refresh_killed_then_rerun(data: &Path, delay_ms: u64, extra: &[&str]) -> String {
    let mut child = patientflow()
        .args(["gold", "refresh", "--data", path(data), "--as-of", AS_OF])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(delay_ms));
    child.kill().unwrap();
    child.wait().unwrap();
    refresh(data, extra)
}

fn refresh(data: &Path, extra: &[&str]) -> String {
    refresh_at(data, AS_OF, extra)
}

/// `gold refresh --as-of <as_of> --format json` plus `extra`; its summary.
pub(crate) fn refresh_at(data: &Path, as_of: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "gold",
        "refresh",
        "--data",
        path(data),
        "--as-of",
        as_of,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    run_ok(&args)
}

#[test]
fn a_refresh_killed_part_way_and_rerun_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    produce(&landing, 120_000, &["--seed", "9", "--until", UNTIL]);
    let base = dir.path().join("base");
    ingest(&landing, &base, &["--no-gold"]);

    // Uninterrupted.
    let clean = dir.path().join("clean");
    copy_root(&base, &clean);
    refresh(&clean, &[]);
    let expected = snapshot(&clean);
    assert!(expected.iter().all(|(_, r)| !r.is_empty()));

    // Killed at different points of a first build, one slice or several, then re-run: a
    // build in slices ends in the same tables as one in a single slice.
    let sliced = ["--rows-per-slice", "30000"];
    for (i, delay_ms) in [300u64, 1_000, 2_000, 3_500, 1_500, 4_000]
        .into_iter()
        .enumerate()
    {
        let data = dir.path().join(format!("data-{i}"));
        copy_root(&base, &data);
        let extra: &[&str] = if i < 4 { &[] } else { &sliced };
        let out = refresh_killed_then_rerun(&data, delay_ms, extra);
        if i >= 4 {
            assert!(out.contains("\"slices\":"), "{out}");
        }
        assert_same(
            &snapshot(&data),
            &expected,
            &format!("killed after {delay_ms} ms with {extra:?}"),
        );
        let out = refresh(&data, &[]);
        assert!(
            out.contains("\"unchanged\":true"),
            "a second refresh is a no-op: {out}"
        );
    }

    // Incremental: new events on top of a built gold, the refresh killed and re-run, equal a
    // full rebuild from the same silver.
    let more = dir.path().join("more");
    produce(&more, 20_000, &["--seed", "10", "--until", UNTIL]);
    for e in std::fs::read_dir(&more).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".ndjson") {
            std::fs::copy(
                e.path(),
                landing.join(format!("more-{}", e.file_name().to_string_lossy())),
            )
            .unwrap();
        }
    }
    let inc = dir.path().join("inc");
    copy_root(&clean, &inc);
    ingest(&landing, &inc, &["--no-gold"]);
    let full = dir.path().join("full");
    copy_root(&inc, &full);
    let out = refresh(&full, &["--full"]);
    assert!(out.contains("\"full\":true"), "{out}");
    let out = refresh_killed_then_rerun(&inc, 700, &[]);
    assert!(out.contains("\"full\":false"), "{out}");
    assert_same(
        &snapshot(&inc),
        &snapshot(&full),
        "incremental after a kill vs full",
    );
}
