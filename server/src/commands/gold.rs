//! `patientflow gold refresh`, and the gold step of `patientflow ingest`.

use patientflow_ingest::{GoldMetrics, GoldRefresh, TableRoot};

use crate::cli::{GoldArgs, GoldStep, RefreshArgs, SummaryFormat};
use crate::config::Config;
use crate::error::Result;

/// The refresh the arguments and config file describe.
pub(crate) fn refresh_for(
    root: TableRoot,
    args: &GoldArgs,
    config: &Config,
) -> Result<GoldRefresh> {
    let mut refresh = GoldRefresh::new(root).with_open_stay_limits(config.gold.open_stays.clone());
    if let Some(as_of) = args.as_of {
        refresh = refresh.with_as_of(as_of);
    }
    if !args.tracked.is_empty() {
        refresh = refresh.with_tracked_attributes(args.tracked.clone());
    } else if let Some(tracked) = &config.gold.tracked_attributes {
        refresh = refresh.with_tracked_attributes(tracked.clone());
    }
    if let Some(rows) = args.rows_per_slice.or(config.gold.rows_per_slice) {
        refresh = refresh.with_rows_per_slice(rows);
    }
    Ok(refresh)
}

/// The refresh an ingest runs after silver, unless told not to.
pub(crate) fn after_ingest(
    root: &TableRoot,
    step: &GoldStep,
    config: &Config,
) -> Result<Option<GoldRefresh>> {
    (!step.no_gold)
        .then(|| refresh_for(root.clone(), &step.gold, config))
        .transpose()
}

/// The summary as a JSON value.
pub(crate) fn summary_json(m: &GoldMetrics) -> serde_json::Value {
    serde_json::json!({
        "silver_seq": m.silver_seq,
        "as_of": chrono::DateTime::from_timestamp_micros(m.as_of).map(|t| t.to_rfc3339()),
        "unchanged": m.unchanged,
        "full": m.full,
        "slices": m.slices,
        "patients": m.patients,
        "patient_versions": m.patient_versions,
        "stays": m.stays,
        "waiting_encounters": m.waiting_encounters,
        "ed_visits": m.ed_visits,
        "stale_stays": m.stale_stays,
        "stale_search": m.stale_search,
        "unknown_departments": m.unknown_departments,
        "unplaced_segments": m.unplaced_segments,
        "census_days": m.census_days,
        "census_rows": m.census_rows,
        "tables_written": m.tables_written,
        "elapsed_seconds": m.elapsed.as_secs_f64(),
    })
}

/// The summary as one line of text.
pub(crate) fn summary_text(m: &GoldMetrics) -> String {
    if m.unchanged {
        return "gold: up to date, nothing to do".into();
    }
    format!(
        "gold: {} patient(s) rebuilt{}{} · {} stays ({} stale) · {} patient versions · {} census rows over {} day(s) · {} encounter(s) waiting for ADMIT · {:.1}s",
        m.patients,
        if m.full { " (full)" } else { "" },
        if m.slices > 1 {
            format!(" in {} slices", m.slices)
        } else {
            String::new()
        },
        m.stays,
        m.stale_stays,
        m.patient_versions,
        m.census_rows,
        m.census_days,
        m.waiting_encounters,
        m.elapsed.as_secs_f64()
    )
}

pub(crate) async fn refresh(args: RefreshArgs, config: &Config) -> Result<()> {
    let root = config.table_root(args.data.as_deref())?;
    let metrics = refresh_for(root, &args.gold, config)?
        .with_full_rebuild(args.full)
        .run()
        .await?;
    match args.format {
        SummaryFormat::Json => println!("{}", summary_json(&metrics)),
        SummaryFormat::Text => println!("{}", summary_text(&metrics)),
    }
    Ok(())
}
