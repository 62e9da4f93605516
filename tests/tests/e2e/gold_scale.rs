//! Gold at scale: the census against an independent recomputation over ≥100k stays, and a
//! refresh killed part-way then re-run ending in the same tables as an uninterrupted one.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use deltalake::arrow::array::{Array, Int32Array, StringArray, TimestampMicrosecondArray};
use patientflow_e2e::{ingest, path, patientflow, produce, query, rows, run_ok, scalar};

const AS_OF: &str = "2026-11-20T06:30:00Z";
const UNTIL: &str = "2026-11-20T00:00:00Z";
const HOUR: i64 = 3_600_000_000;

const GOLD: [&str; 6] = [
    "gold/dim_department",
    "gold/dim_patient",
    "gold/dim_date",
    "gold/fact_admission",
    "gold/fact_stay_segment",
    "gold/fact_census_hourly",
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

    // Census by a sweep over the segments: started by the hour minus ended by the hour.
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
        for i in 0..b.num_rows() {
            let key = (h.value(i), d.value(i).to_string());
            starts.entry(key.clone()).or_default().push(s.value(i));
            if e.is_valid(i) {
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
    GOLD.iter()
        .map(|t| {
            let mut r = rows(data, &[("t", t)], "select * from t");
            r.sort_unstable();
            (t.to_string(), r)
        })
        .collect()
}

#[test]
fn a_refresh_killed_part_way_and_rerun_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    produce(&landing, 120_000, &["--seed", "9", "--until", UNTIL]);
    let refresh = |data: &Path| {
        run_ok(&[
            "gold",
            "refresh",
            "--data",
            path(data),
            "--as-of",
            AS_OF,
            "--format",
            "json",
        ])
    };

    // Uninterrupted: silver first, then one refresh.
    let clean = dir.path().join("clean");
    ingest(&landing, &clean, &["--no-gold"]);
    refresh(&clean);
    let expected = snapshot(&clean);
    assert!(expected.iter().all(|(_, r)| !r.is_empty()));

    // Twice more on top of a first build: new events arrive, the refresh is killed, re-run.
    let more = dir.path().join("more");
    produce(&more, 20_000, &["--seed", "10", "--until", UNTIL]);

    for (i, delay_ms) in [150u64, 600, 1_500, 3_000].into_iter().enumerate() {
        let data = dir.path().join(format!("data-{i}"));
        ingest(&landing, &data, &["--no-gold"]);
        let mut child = patientflow()
            .args(["gold", "refresh", "--data", path(&data), "--as-of", AS_OF])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        refresh(&data);
        assert_eq!(snapshot(&data), expected, "killed after {delay_ms} ms");
        // A second refresh is a no-op.
        let out = refresh(&data);
        assert!(out.contains("\"unchanged\":true"), "{out}");
    }

    // Incremental: new events on top of a built gold, killed and re-run, equal a clean build
    // of everything.
    let all = dir.path().join("all");
    std::fs::create_dir_all(&all).unwrap();
    for (from, name) in [(&landing, "a"), (&more, "b")] {
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().ends_with(".ndjson") {
                std::fs::copy(
                    e.path(),
                    all.join(format!("{name}-{}", e.file_name().to_string_lossy())),
                )
                .unwrap();
            }
        }
    }
    let full = dir.path().join("full");
    ingest(&all, &full, &["--no-gold"]);
    refresh(&full);
    let expected_all = snapshot(&full);

    let inc = dir.path().join("inc");
    let staged = dir.path().join("staged");
    std::fs::create_dir_all(&staged).unwrap();
    for e in std::fs::read_dir(&all).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("a-") {
            std::fs::copy(e.path(), staged.join(e.file_name())).unwrap();
        }
    }
    ingest(&staged, &inc, &["--as-of", AS_OF]);
    for e in std::fs::read_dir(&all).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("b-") {
            std::fs::copy(e.path(), staged.join(e.file_name())).unwrap();
        }
    }
    ingest(&staged, &inc, &["--no-gold"]);
    let mut child = patientflow()
        .args(["gold", "refresh", "--data", path(&inc), "--as-of", AS_OF])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = refresh(&inc);
    assert_eq!(
        snapshot(&inc),
        expected_all,
        "incremental refresh after a kill: {out}"
    );
}
