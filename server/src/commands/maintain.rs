//! `patientflow maintain`: compaction, checkpoints and VACUUM of every table under a root.

use std::time::Duration;

use patientflow_ingest::{Maintenance, MaintenanceReport, TableRoot};

use crate::cli::{MaintainArgs, SummaryFormat};
use crate::config::Config;
use crate::error::{Error, Result};

pub(crate) async fn run(args: MaintainArgs, config: &Config) -> Result<()> {
    let root = config.table_root(args.data.as_deref())?;
    let maintenance = maintenance_for(root, args.retention_hours, args.checkpoint_every, config)?
        .with_dry_run(args.dry_run);
    let report = maintenance.run().await?;
    match args.format {
        SummaryFormat::Json => println!("{}", summary_json(&report)),
        SummaryFormat::Text => print!("{}", summary_text(&report)),
    }
    Ok(())
}

/// The maintenance the flags (when given) and the config file describe.
pub(crate) fn maintenance_for(
    root: TableRoot,
    retention_hours: Option<f64>,
    checkpoint_every: Option<u64>,
    config: &Config,
) -> Result<Maintenance> {
    let mut maintenance = Maintenance::new(root);
    if let Some(hours) = retention_hours.or(config.maintain.retention_hours) {
        let retention = Duration::try_from_secs_f64(hours * 3_600.0).map_err(|_| {
            Error::InvalidArgument(format!(
                "--retention-hours {hours}: give a number of hours, at least 1"
            ))
        })?;
        maintenance = maintenance.with_retention(retention)?;
    }
    if let Some(commits) = checkpoint_every.or(config.maintain.checkpoint_every) {
        maintenance = maintenance.with_checkpoint_every(commits)?;
    }
    Ok(maintenance)
}

fn summary_json(r: &MaintenanceReport) -> serde_json::Value {
    let operations: Vec<serde_json::Value> = r
        .operations
        .iter()
        .map(|o| {
            serde_json::json!({
                "table": o.table,
                "operation": o.kind,
                "version": o.version,
                "files_removed": o.files_removed,
                "files_added": o.files_added,
                "bytes_removed": o.bytes_removed,
                "deleted": o.deleted,
            })
        })
        .collect();
    serde_json::json!({
        "run_id": r.run_id,
        "dry_run": r.dry_run,
        "operations": operations,
        "elapsed_seconds": r.elapsed.as_secs_f64(),
    })
}

/// One line per operation that did something, then a total.
fn summary_text(r: &MaintenanceReport) -> String {
    let mut out = String::new();
    for o in &r.operations {
        let line = match o.kind {
            "compact" => format!(
                "{}: compacted {} file(s) ({} bytes) into {}",
                o.table, o.files_removed, o.bytes_removed, o.files_added
            ),
            "checkpoint" => format!("{}: checkpoint at version {}", o.table, o.version),
            "log_cleanup" => format!(
                "{}: deleted {} expired log file(s)",
                o.table, o.files_removed
            ),
            "checkpoint_interval" => format!(
                "{}: its writers checkpoint it every --checkpoint-every commits from version {}",
                o.table, o.version
            ),
            _ if o.deleted.is_empty() => continue,
            _ if r.dry_run => format!(
                "{}: VACUUM would delete {} file(s):\n  {}",
                o.table,
                o.deleted.len(),
                o.deleted.join("\n  ")
            ),
            _ => format!("{}: VACUUM deleted {} file(s)", o.table, o.deleted.len()),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let deleted: usize = r.operations.iter().map(|o| o.deleted.len()).sum();
    out.push_str(&format!(
        "maintain{}: {} operation(s), {} file(s) {} · {:.1}s\n",
        if r.dry_run { " (dry run)" } else { "" },
        r.operations.iter().filter(|o| o.kind != "vacuum").count(),
        deleted,
        if r.dry_run {
            "VACUUM would delete"
        } else {
            "vacuumed"
        },
        r.elapsed.as_secs_f64()
    ));
    out
}
