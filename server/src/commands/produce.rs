//! `patientflow produce`.

use std::path::PathBuf;

use patientflow_ingest::producer::{DefectMode, KafkaSink, Paced, parse_defect_rate, write_ledger};
use patientflow_ingest::source::kafka::Endpoint;
use patientflow_ingest::{FileSink, Producer, Shape, Sink};

use crate::cli::{DefectModeArg, ProduceArgs, ShapeArg};
use crate::config::Config;
use crate::error::{Error, Result};

pub(crate) fn run(args: ProduceArgs, config: &Config) -> Result<()> {
    let shape = match args.shape {
        ShapeArg::Flat => Shape::Flat,
        ShapeArg::Adt => Shape::Adt,
    };
    let mut producer = Producer::new(args.events, shape)
        .with_seed(args.seed)
        .with_dirty_rate(args.dirty_rate)?
        .with_flu_season(!args.no_flu_season)
        .with_evolve_at(args.evolve_at)
        .with_lost_rate(args.lost_rate)?
        .with_defect_mode(match args.defect_mode {
            DefectModeArg::Add => DefectMode::Add,
            DefectModeArg::Replace => DefectMode::Replace,
        });
    for spec in &args.defect_rates {
        let (defect, rate) = parse_defect_rate(spec)?;
        producer = producer.with_defect_rate(defect, rate)?;
    }
    if let Some(until) = &args.until {
        let t = chrono::DateTime::parse_from_rfc3339(until).map_err(|e| {
            Error::InvalidArgument(format!(
                "--until `{until}`: {e}; use e.g. 2026-11-24T12:00:00Z"
            ))
        })?;
        producer = producer.with_until(t.timestamp_micros());
    }
    let (sink, dest, default_ledger): (Box<dyn Sink>, String, PathBuf) = match (&args.to, &args.out)
    {
        (Some(to), _) => {
            let endpoint = Endpoint::parse(to, |name| std::env::var(name).ok())?;
            let sink = KafkaSink::new(&endpoint, &config.kafka)?;
            (
                Box::new(sink),
                to.clone(),
                PathBuf::from("_producer_ledger.json"),
            )
        }
        (None, Some(out)) => {
            let sink = FileSink::new(out, "events", args.records_per_file)?;
            // Paced records are a live stream: each reaches its file as it is sent.
            let sink = if args.rate.is_some() {
                sink.live()
            } else {
                sink
            };
            let dest = out.display().to_string();
            (Box::new(sink), dest, out.join("_producer_ledger.json"))
        }
        (None, None) => {
            return Err(Error::InvalidArgument(
                "nowhere to send: pass --out <landing folder> or --to kafka://HOST:PORT/TOPIC"
                    .into(),
            ));
        }
    };
    let mut sink = match args.rate {
        Some(rate) => Box::new(Paced::new(sink, rate)),
        None => sink,
    };
    let ledger = producer.run(sink.as_mut())?;
    let ledger_path = args.ledger.unwrap_or(default_ledger);
    write_ledger(&ledger, &ledger_path)?;
    println!(
        "wrote {} records ({} stays, {} patients) in {} file(s) to {}",
        ledger.records_in,
        ledger.stays,
        ledger.patients,
        ledger.outputs.len(),
        dest
    );
    println!(
        "expected: {} quarantined, {} duplicates, {} in silver, {} event(s) lost; events {} … {}; ledger: {}",
        ledger.quarantined,
        ledger.duplicates,
        ledger.silver_rows,
        ledger.lost.values().sum::<u64>(),
        ledger.first_event.as_deref().unwrap_or("-"),
        ledger.last_event.as_deref().unwrap_or("-"),
        ledger_path.display()
    );
    Ok(())
}
