//! `patientflow ingest`.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use patientflow_ingest::{BatchIngest, Dataset, Ingest, Progress, ReferenceData};

use super::gold;
use crate::cli::{BatchArgs, IngestArgs, IngestCommand, SummaryFormat};
use crate::config::Config;
use crate::error::{Error, Result};

/// The source time zone from the flag or the config file.
pub(super) fn source_timezone(
    flag: Option<&String>,
    config: &Config,
) -> Result<Option<chrono_tz::Tz>> {
    flag.or(config.ingest.source_timezone.as_ref())
        .map(|tz| {
            tz.parse::<chrono_tz::Tz>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "unknown time zone `{tz}`; use an IANA name such as UTC or America/Chicago"
                ))
            })
        })
        .transpose()
}

pub(crate) async fn run(mut args: IngestArgs, config: &Config) -> Result<()> {
    let from = match (args.batch.take(), args.from.take()) {
        (Some(IngestCommand::Batch(batch)), _) => return run_batch(batch, config).await,
        (None, Some(from)) => from,
        (None, None) => {
            return Err(Error::InvalidArgument(
                "nothing to ingest: pass --from <landing folder or file>, or use `ingest batch`"
                    .into(),
            ));
        }
    };
    let root = config.table_root(args.data.as_deref())?;
    if args.follow {
        return super::follow::run(&from, root, &args, config).await;
    }
    if from.contains("://") {
        return Err(Error::InvalidArgument(format!(
            "`{from}` is a stream; add --follow to consume it"
        )));
    }
    let mut ingest = Ingest::new(root.clone(), &from);
    if let Some(path) = args
        .departments
        .as_ref()
        .or(config.ingest.departments.as_ref())
    {
        ingest = ingest.with_reference(ReferenceData::from_path(path)?);
    }
    if let Some(refresh) = gold::after_ingest(&root, &args.then, config)? {
        ingest = ingest.with_gold(refresh);
    }
    if let Some(tz) = source_timezone(args.source_timezone.as_ref(), config)? {
        ingest = ingest.with_source_timezone(tz);
    }
    if let Some(n) = args.batch_records.or(config.ingest.batch_records) {
        ingest = ingest.with_batch_records(n);
    }
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} ingest [{bar:30}] {bytes}/{total_bytes} {msg} ({bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let progress_bar = bar.clone();
    ingest = ingest.with_progress(Arc::new(move |p: Progress| {
        progress_bar.set_length(p.bytes_total);
        progress_bar.set_position(p.bytes_done);
        progress_bar.set_message(format!("{} records", p.records));
    }));
    let metrics = ingest.run().await;
    bar.finish_and_clear();
    let metrics = metrics?;
    let c = &metrics.counts;
    match args.format {
        SummaryFormat::Json => {
            let rules: serde_json::Map<String, serde_json::Value> =
                patientflow_ingest::silver::RULES
                    .iter()
                    .zip(&c.rules)
                    .map(|(r, n)| (r.name.to_string(), (*n).into()))
                    .collect();
            let out = serde_json::json!({
                "run_id": metrics.run_id,
                "files": metrics.files,
                "files_unchanged": metrics.files_unchanged,
                "bytes_read": metrics.bytes_read,
                "bronze_batches": metrics.bronze_batches,
                "recovered_batches": metrics.recovered_batches,
                "records_in": c.records_in,
                "silver_rows": c.silver_rows,
                "quarantined": c.quarantined,
                "duplicates": c.duplicates,
                "rules": rules,
                "gold": metrics.gold.as_ref().map(gold::summary_json),
                "elapsed_seconds": metrics.elapsed.as_secs_f64(),
            });
            println!("{out}");
        }
        SummaryFormat::Text => {
            let secs = metrics.elapsed.as_secs_f64().max(1e-9);
            println!(
                "ingested {} records from {} file(s) ({} unchanged) into {}",
                c.records_in,
                metrics.files,
                metrics.files_unchanged,
                root.url()
            );
            println!(
                "  silver {} · quarantined {} · duplicates {} · {} bronze batch(es), {} recovered · {:.1}s ({:.0} records/s)",
                c.silver_rows,
                c.quarantined,
                c.duplicates,
                metrics.bronze_batches,
                metrics.recovered_batches,
                secs,
                c.records_in as f64 / secs
            );
            if let Some(g) = &metrics.gold {
                println!("  {}", gold::summary_text(g));
            }
        }
    }
    Ok(())
}

async fn run_batch(args: BatchArgs, config: &Config) -> Result<()> {
    if args.departments.is_empty() && args.ehr.is_empty() {
        return Err(Error::InvalidArgument(
            "nothing to ingest: pass --departments <csv> and/or --ehr <csv|parquet>".into(),
        ));
    }
    let root = config.table_root(args.data.as_deref())?;
    let mut batch = BatchIngest::new(root.clone());
    for path in &args.departments {
        batch = batch.with_file(Dataset::Departments, path);
    }
    for path in &args.ehr {
        batch = batch.with_file(Dataset::Ehr, path);
    }
    if let Some(tz) = source_timezone(args.source_timezone.as_ref(), config)? {
        batch = batch.with_source_timezone(tz);
    }
    if let Some(refresh) = gold::after_ingest(&root, &args.then, config)? {
        batch = batch.with_gold(refresh);
    }
    let metrics = batch.run().await?;
    match args.format {
        SummaryFormat::Json => {
            let datasets: serde_json::Map<String, serde_json::Value> = metrics
                .counts
                .iter()
                .map(|(dataset, c)| {
                    let rules: serde_json::Map<String, serde_json::Value> = dataset
                        .rules()
                        .iter()
                        .zip(&c.rules)
                        .map(|(r, n)| (r.name.to_string(), (*n).into()))
                        .collect();
                    let v = serde_json::json!({
                        "records_in": c.records_in,
                        "silver_rows": c.silver_rows,
                        "quarantined": c.quarantined,
                        "duplicates": c.duplicates,
                        "rules": rules,
                    });
                    (dataset.name().to_string(), v)
                })
                .collect();
            let out = serde_json::json!({
                "files": metrics.files,
                "files_unchanged": metrics.files_unchanged,
                "datasets": datasets,
                "gold": metrics.gold.as_ref().map(gold::summary_json),
                "elapsed_seconds": metrics.elapsed.as_secs_f64(),
            });
            println!("{out}");
        }
        SummaryFormat::Text => {
            println!(
                "ingested {} file(s) ({} unchanged) into {}",
                metrics.files,
                metrics.files_unchanged,
                root.url()
            );
            for (dataset, c) in &metrics.counts {
                println!(
                    "  {}: {} rows · silver {} · quarantined {} · duplicates {}",
                    dataset.name(),
                    c.records_in,
                    c.silver_rows,
                    c.quarantined,
                    c.duplicates
                );
            }
            if let Some(g) = &metrics.gold {
                println!("  {}", gold::summary_text(g));
            }
        }
    }
    Ok(())
}
