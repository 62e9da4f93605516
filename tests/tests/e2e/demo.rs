//! `patientflow demo`: the simulated network's history at once, its recent past replayed
//! faster until the replay meets the clock, then live, through the landing folder or a real
//! broker (nisshi on loopback); the served figures move while one watches.

use std::time::{Duration, Instant};

use patientflow_e2e::{Broker, Server, path, wait_for};
use serde_json::{Value, json};

use crate::serve::{get, post};

/// `GET /api/v1/freshness` (status 200 asserted).
fn freshness(server: &Server) -> Value {
    let (status, body) = get(&server.client(), &server.url("/api/v1/freshness"));
    assert_eq!(status, 200, "{body}");
    body
}

/// The stays gold holds, over REST (0 before gold exists).
fn stays(server: &Server) -> i64 {
    let sql = json!({"sql": "SELECT count(*) AS n FROM gold.fact_admission"});
    let (_, body) = post(&server.client(), &server.url("/api/v1/sql"), &sql);
    body["rows"][0]["n"].as_i64().unwrap_or(0)
}

/// A demo in `dir` with its development key there, `extra` arguments after the common ones.
fn demo(dir: &std::path::Path, extra: &[&str]) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = vec!["demo", "--dir", path(dir), "--events", "20000"];
    args.extend_from_slice(extra);
    Server::start_with(&args, dir, &[])
}

/// The landing folder: six hours replayed 361 times faster catch up with the clock after a
/// minute; meanwhile the header's figures are "catching up" (events more than an hour before
/// the census time), then they are not, and gold keeps growing as the events come.
#[test]
fn the_demo_replays_the_recent_past_then_runs_live() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let server = demo(
        &dir.path().join("demo"),
        &["--replay-hours", "6", "--speed", "361"],
    );
    let first = wait_for(120, "gold's first refresh", || {
        let f = freshness(&server);
        f["events_as_of"].is_string().then_some(f)
    });
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "the history took {:?}: too late to see the replay",
        started.elapsed()
    );
    let warn = first["events_warn_after_seconds"].as_f64().unwrap();
    assert!(
        first["events_behind_seconds"].as_f64().unwrap() > warn,
        "replaying, so catching up: {first}"
    );
    let stays_then = stays(&server);
    assert!(stays_then > 0);

    // Caught up after 6 h / 360 = 60 s of replay.
    let live = wait_for(150, "the replay meeting the clock", || {
        let f = freshness(&server);
        (f["events_behind_seconds"].as_f64().unwrap() < warn).then_some(f)
    });
    let as_of = |f: &Value, key: &str| {
        chrono::DateTime::parse_from_rfc3339(f[key].as_str().unwrap()).unwrap()
    };
    assert!(
        as_of(&live, "events_as_of") > as_of(&first, "events_as_of") + chrono::Duration::hours(4),
        "the events moved on by the replayed hours: {first} → {live}"
    );
    assert!(stays(&server) > stays_then, "gold grew with the replay");
    assert!(
        server.terminate().success(),
        "the demo stops cleanly on SIGTERM"
    );
}

/// Through a broker: the simulated network produces to the topic and the demo consumes it as
/// its group; gold grows while it runs.
#[test]
fn the_demo_streams_through_a_broker() {
    let broker = Broker::start();
    broker.admin(&["topic", "create", "patientflow-adt", "--partitions", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let server = demo(
        &dir.path().join("demo"),
        &[
            "--kafka",
            &broker.addr,
            "--replay-hours",
            "2",
            "--speed",
            "121",
        ],
    );
    let first = wait_for(120, "gold from the broker", || {
        let n = stays(&server);
        (n > 0).then_some(n)
    });
    wait_for(60, "gold growing", || {
        (stays(&server) > first).then_some(())
    });
    assert!(server.terminate().success());
}
