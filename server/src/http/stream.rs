//! A streaming ingest's counters as Prometheus text and as a one-line status.

use std::fmt::Write;

use patientflow_ingest::stream::{FRESHNESS_BUCKETS, Histogram, StreamSnapshot};

/// Prometheus text exposition of a stream's counters.
pub(crate) fn render_metrics(s: &StreamSnapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    metric(
        "patientflow_stream_batches_total",
        "counter",
        "Micro-batches committed through gold.",
        &one(s.batches),
    );
    metric(
        "patientflow_stream_records_total",
        "counter",
        "Records committed to bronze and refined into silver.",
        &one(s.records),
    );
    metric(
        "patientflow_stream_quarantined_total",
        "counter",
        "Streamed records quarantined.",
        &one(s.quarantined),
    );
    metric(
        "patientflow_stream_duplicates_total",
        "counter",
        "Streamed records dropped as duplicates.",
        &one(s.duplicates),
    );
    metric(
        "patientflow_stream_refused_parts_total",
        "counter",
        "Batch parts not committed: another consumer or writer had consumed them.",
        &one(s.refused_parts),
    );
    metric(
        "patientflow_stream_paused",
        "gauge",
        "1 while the source is paused: the next batch is full and the last one still lands.",
        &one(u64::from(s.paused)),
    );
    let lag: Vec<(String, f64)> = s
        .lag
        .iter()
        .map(|(p, l)| (format!("{{partition=\"{p}\"}}"), *l as f64))
        .collect();
    metric(
        "patientflow_stream_consumer_lag",
        "gauge",
        "Messages behind the newest, per topic partition.",
        &lag,
    );
    if let Some(t) = s.last_batch_at {
        metric(
            "patientflow_stream_last_batch_timestamp_seconds",
            "gauge",
            "When the last micro-batch became visible.",
            &[(String::new(), t as f64 / 1e6)],
        );
    }
    metric(
        "patientflow_stream_freshness_seconds",
        "histogram",
        "Event receipt (a Kafka message's timestamp, else when it was read) to visible in gold.",
        &histogram("", &s.freshness),
    );
    metric(
        "patientflow_stream_delivery_seconds",
        "histogram",
        "A Kafka message's timestamp to its receipt by this consumer: the broker's part of freshness.",
        &histogram("", &s.delivery),
    );
    let phases = [("landing", &s.landing_seconds), ("gold", &s.gold_seconds)];
    metric(
        "patientflow_stream_batch_seconds",
        "histogram",
        "Wall time per micro-batch and phase: landing (writer lock, bronze, silver), gold.",
        &phases
            .iter()
            .flat_map(|(phase, h)| histogram(&format!("phase=\"{phase}\""), h))
            .collect::<Vec<_>>(),
    );
    out
}

/// A histogram's samples, each with `labels` (`name="value"` pairs, or none).
fn histogram(labels: &str, h: &Histogram) -> Vec<(String, f64)> {
    let with = |more: &str| match (labels.is_empty(), more.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("{{{more}}}"),
        (false, true) => format!("{{{labels}}}"),
        (false, false) => format!("{{{labels},{more}}}"),
    };
    let mut samples: Vec<(String, f64)> = FRESHNESS_BUCKETS
        .iter()
        .zip(&h.buckets)
        .map(|(b, n)| {
            (
                format!("_bucket{}", with(&format!("le=\"{b}\""))),
                *n as f64,
            )
        })
        .collect();
    samples.push((format!("_bucket{}", with("le=\"+Inf\"")), h.count as f64));
    samples.push((format!("_sum{}", with("")), h.sum));
    samples.push((format!("_count{}", with("")), h.count as f64));
    samples
}

/// One line for a terminal: batches, records, lag, freshness, how long since the last batch.
pub(crate) fn status_line(s: &StreamSnapshot, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut line = format!(
        "{} batches · {} records ({} quarantined, {} duplicates)",
        s.batches, s.records, s.quarantined, s.duplicates
    );
    if !s.lag.is_empty() {
        let lag: i64 = s.lag.iter().map(|(_, l)| l.max(&0)).sum();
        let _ = write!(line, " · lag {lag}");
    }
    if s.freshness.count > 0 {
        let _ = write!(
            line,
            " · freshness p50 ≤ {}s, p99 ≤ {}s",
            s.freshness.quantile_bound(0.5),
            s.freshness.quantile_bound(0.99)
        );
    }
    match s.last_batch_at {
        Some(t) => {
            let ago = (now.timestamp_micros() - t).max(0) / 1_000_000;
            let _ = write!(
                line,
                " · last batch {ago}s ago ({:.2}s)",
                s.last_batch_seconds
            );
        }
        None => line.push_str(" · waiting for records"),
    }
    if s.paused {
        line.push_str(" · paused (next batch full, last one landing)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_the_histogram_and_lag() {
        let mut s = StreamSnapshot {
            batches: 3,
            records: 120,
            lag: vec![("events/0".into(), 5)],
            ..StreamSnapshot::default()
        };
        s.freshness.observe(0.7, 120);
        s.gold_seconds.observe(0.4, 3);
        s.delivery.observe(0.05, 100);
        let text = render_metrics(&s);
        assert!(
            text.contains("patientflow_stream_batches_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("patientflow_stream_consumer_lag{partition=\"events/0\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("patientflow_stream_freshness_seconds_bucket{le=\"1\"} 120\n"),
            "{text}"
        );
        assert!(
            text.contains("patientflow_stream_freshness_seconds_bucket{le=\"0.5\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("patientflow_stream_freshness_seconds_count 120\n"));
        assert!(
            text.contains("patientflow_stream_delivery_seconds_bucket{le=\"0.1\"} 100\n"),
            "{text}"
        );
        assert!(
            text.contains("patientflow_stream_batch_seconds_bucket{phase=\"gold\",le=\"0.5\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("patientflow_stream_batch_seconds_count{phase=\"landing\"} 0\n"));
        let line = status_line(&s, chrono::Utc::now());
        assert!(line.starts_with("3 batches · 120 records"), "{line}");
        assert!(line.contains("lag 5"), "{line}");
        assert!(line.contains("p99 ≤ 1s"), "{line}");
    }
}
