//! `patientflow ingest --follow`: a landing folder or a Kafka topic, in micro-batches through
//! bronze, silver and gold, with a live status line and Prometheus `/metrics`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use patientflow_ingest::source::Follow;
use patientflow_ingest::source::follow::FollowLanding;
use patientflow_ingest::source::{PositionLog, kafka};
use patientflow_ingest::{ReferenceData, Stream, StreamStatus, TableRoot};

use super::gold;
use super::ingest::source_timezone;
use crate::app::stop_signal;
use crate::cli::{IngestArgs, SummaryFormat};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::stream::{render_metrics, status_line};

/// The consumer group when none is given.
const DEFAULT_GROUP: &str = "patientflow";

/// How a stream is set up, from flags or a job of `patientflow run`.
#[derive(Debug, Default)]
pub(crate) struct StreamOptions<'a> {
    /// Department reference file (else silver's departments).
    pub(crate) departments: Option<&'a std::path::Path>,
    /// Gold after every micro-batch.
    pub(crate) gold: Option<patientflow_ingest::GoldRefresh>,
    pub(crate) source_timezone: Option<chrono_tz::Tz>,
    pub(crate) batch_records: Option<usize>,
    pub(crate) batch_interval_ms: Option<u64>,
    /// Kafka consumer group (default `patientflow`).
    pub(crate) group: Option<&'a str>,
}

/// The stream and the followed source `from` names.
pub(crate) fn open(
    from: &str,
    root: &TableRoot,
    options: StreamOptions<'_>,
    config: &Config,
) -> Result<(Stream, Box<dyn Follow>)> {
    crate::purge_freed_memory_at_once();
    let mut stream = Stream::new(root.clone());
    if let Some(path) = options.departments.or(config.ingest.departments.as_deref()) {
        stream = stream.with_reference(ReferenceData::from_path(path)?);
    }
    if let Some(refresh) = options.gold {
        stream = stream.with_gold(refresh);
    }
    if let Some(tz) = options.source_timezone {
        stream = stream.with_source_timezone(tz);
    }
    if let Some(n) = options.batch_records.or(config.ingest.batch_records) {
        stream = stream.with_max_records(n);
    }
    if let Some(ms) = options
        .batch_interval_ms
        .or(config.ingest.batch_interval_ms)
    {
        stream = stream.with_interval(Duration::from_millis(ms.max(1)));
    }
    let source = open_source(from, root, options.group, config)?;
    Ok((stream, source))
}

pub(super) async fn run(
    from: &str,
    root: TableRoot,
    args: &IngestArgs,
    config: &Config,
) -> Result<()> {
    let options = StreamOptions {
        departments: args.departments.as_deref(),
        gold: gold::after_ingest(&root, &args.then, config)?,
        source_timezone: source_timezone(args.source_timezone.as_ref(), config)?,
        batch_records: args.batch_records,
        batch_interval_ms: args.batch_interval_ms,
        group: args.group.as_deref(),
    };
    let (stream, source) = open(from, &root, options, config)?;
    let status = stream.status();
    let stop = stream.stop_handle();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping: committing the batch in hand");
        stop.stop();
    });
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, status.clone()).await?;
    }
    let reporter = tokio::spawn(report(status.clone()));
    let result = stream.run(source).await;
    reporter.abort();
    let metrics = result?;
    let c = &metrics.counts;
    match args.format {
        SummaryFormat::Json => println!(
            "{}",
            serde_json::json!({
                "run_id": metrics.run_id,
                "batches": metrics.batches,
                "recovered_batches": metrics.recovered_batches,
                "records_in": c.records_in,
                "silver_rows": c.silver_rows,
                "quarantined": c.quarantined,
                "duplicates": c.duplicates,
            })
        ),
        SummaryFormat::Text => println!(
            "followed {from}: {} records in {} batch(es) · silver {} · quarantined {} · duplicates {}",
            c.records_in, metrics.batches, c.silver_rows, c.quarantined, c.duplicates
        ),
    }
    Ok(())
}

/// The followed source `from` names.
fn open_source(
    from: &str,
    root: &TableRoot,
    group: Option<&str>,
    config: &Config,
) -> Result<Box<dyn Follow>> {
    let log = PositionLog::new(root.clone(), tokio::runtime::Handle::current());
    if from.contains("://") {
        let endpoint = kafka::Endpoint::parse(from, |name| std::env::var(name).ok())?;
        let group = group.unwrap_or(DEFAULT_GROUP);
        let source = kafka::KafkaSource::subscribe(&endpoint, group, &config.kafka, log)?;
        tracing::info!(topic = %endpoint.topic, group, brokers = %endpoint.brokers, "consuming");
        return Ok(Box::new(source));
    }
    let path = std::path::Path::new(from);
    if !path.exists() {
        return Err(Error::InvalidArgument(format!(
            "landing folder `{from}` does not exist; create it or pass another --from"
        )));
    }
    Ok(Box::new(FollowLanding::new(path, log)))
}

/// Serves `/metrics` for the stream on `addr`.
async fn serve_metrics(addr: std::net::SocketAddr, status: Arc<StreamStatus>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(Error::Output)?;
    eprintln!("metrics: http://{local}/metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let status = status.clone();
            async move { render_metrics(&status.snapshot()) }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

/// A live status line on a terminal; a log line every 30 s otherwise.
async fn report(status: Arc<StreamStatus>) {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        loop {
            bar.set_message(status_line(&status.snapshot(), chrono::Utc::now()));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    } else {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            tracing::info!("{}", status_line(&status.snapshot(), chrono::Utc::now()));
        }
    }
}
