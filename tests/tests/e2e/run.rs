//! `patientflow run --check`: the shipped site config is accepted, schedules fire in their
//! time zone across the 2027 daylight-saving days, a restart's catch-up is previewed, and a
//! bad job is refused with what to fix.

use patientflow_e2e::{patientflow, run_ok};

fn site_config() -> String {
    format!("{}/../deploy/patientflow.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_shipped_site_config_checks_and_fires_across_both_2027_dst_days() {
    let config = site_config();
    let spring = run_ok(&[
        "run",
        "--check",
        "--config",
        &config,
        "--after",
        "2027-03-12T12:00:00Z",
        "--count",
        "3",
    ]);
    assert!(spring.starts_with("config OK: 5 job(s)"), "{spring}");
    for job in [
        "adt-stream (stream)",
        "departments-daily (departments)",
        "ehr-daily (ehr)",
        "gold-hourly (gold)",
        "maintain-nightly (maintain)",
    ] {
        assert!(spring.contains(job), "{job} missing:\n{spring}");
    }
    // 02:00 Chicago daily: on 14 March 2027 02:00 does not exist; it runs once, at 03:00 CDT.
    assert!(
        spring.contains(
            "next: 2027-03-13 02:00 CST (2027-03-13T08:00Z)\n        2027-03-14 03:00 CDT (2027-03-14T08:00Z)\n        2027-03-15 02:00 CDT (2027-03-15T07:00Z)\n"
        ),
        "{spring}"
    );
    // On 7 November 2027 02:00 comes once, in CST; 03:30 likewise.
    let fall = run_ok(&[
        "run",
        "--check",
        "--config",
        &config,
        "--after",
        "2027-11-06T12:00:00Z",
        "--count",
        "2",
    ]);
    assert!(
        fall.contains("next: 2027-11-07 02:00 CST (2027-11-07T08:00Z)\n        2027-11-08 02:00 CST (2027-11-08T08:00Z)\n"),
        "{fall}"
    );
    assert!(
        fall.contains("next: 2027-11-07 03:30 CST (2027-11-07T09:30Z)"),
        "{fall}"
    );
}

#[test]
fn a_restart_after_three_days_down_previews_each_catch_up_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("patientflow.toml");
    let job = |name: &str, catchup: &str| {
        format!(
            "[[jobs]]\nname = \"{name}\"\nkind = \"gold\"\nschedule = \"0 2 * * *\"\ncatchup = \"{catchup}\"\nmax_catchup = 2\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "[run]\ntimezone = \"America/Chicago\"\n{}{}{}",
            job("skip-missed", "none"),
            job("latest", "latest"),
            job("all", "all")
        ),
    )
    .unwrap();
    let out = run_ok(&[
        "run",
        "--check",
        "--config",
        config.to_str().unwrap(),
        "--after",
        "2027-06-04T12:00:00Z",
        "--down-since",
        "2027-06-01T07:00:00Z",
        "--count",
        "1",
    ]);
    let section = |name: &str| {
        let start = out.find(&format!("\n{name} (gold)")).unwrap();
        let rest = &out[start + 1..];
        rest[..rest.find("\n\n").unwrap_or(rest.len())].to_string()
    };
    let (d2, d3, d4) = (
        "2027-06-02 02:00 CDT (2027-06-02T07:00Z)",
        "2027-06-03 02:00 CDT (2027-06-03T07:00Z)",
        "2027-06-04 02:00 CDT (2027-06-04T07:00Z)",
    );
    let none = section("skip-missed");
    assert!(
        none.contains(&format!("skip 3 missed, {d2} … {d4}")),
        "{none}"
    );
    assert!(!none.contains("on restart: run"), "{none}");
    let latest = section("latest");
    assert!(
        latest.contains(&format!("skip 2 missed, {d2} … {d3}")),
        "{latest}"
    );
    assert!(
        latest.contains(&format!("on restart: run {d4} (catch-up)")),
        "{latest}"
    );
    let all = section("all");
    assert!(all.contains(&format!("on restart: skip {d2}\n")), "{all}");
    assert!(
        all.contains(&format!(
            "on restart: run {d3} (catch-up)\n  on restart: run {d4} (catch-up)"
        )),
        "{all}"
    );
}

#[test]
fn a_bad_job_is_refused_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("patientflow.toml");
    std::fs::write(
        &config,
        "[[jobs]]\nname = \"ehr\"\nkind = \"ehr\"\nschedule = \"0 2 * * *\"\n",
    )
    .unwrap();
    let out = patientflow()
        .args(["run", "--check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("job `ehr`: kind `ehr` needs `from`"), "{err}");
}
