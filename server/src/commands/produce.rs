//! `patientflow produce`.

use patientflow_ingest::producer::{DefectMode, parse_defect_rate, write_ledger};
use patientflow_ingest::{FileSink, Producer, Shape};

use crate::cli::{DefectModeArg, ProduceArgs, ShapeArg};
use crate::error::{Error, Result};

pub(crate) fn run(args: ProduceArgs) -> Result<()> {
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
    let mut sink = FileSink::new(&args.out, "events", args.records_per_file)?;
    let ledger = producer.run(&mut sink)?;
    let ledger_path = args
        .ledger
        .unwrap_or_else(|| args.out.join("_producer_ledger.json"));
    write_ledger(&ledger, &ledger_path)?;
    println!(
        "wrote {} records ({} stays, {} patients) in {} file(s) to {}",
        ledger.records_in,
        ledger.stays,
        ledger.patients,
        ledger.outputs.len(),
        args.out.display()
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
