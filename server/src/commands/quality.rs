//! `patientflow quality report`.

use patientflow_ingest::QualityReport;

use crate::cli::{ReportArgs, ReportFormat};
use crate::config::Config;
use crate::error::{Error, Result};

pub(crate) async fn report(args: ReportArgs, config: &Config) -> Result<()> {
    let root = config.table_root(args.data.as_deref())?;
    let report = QualityReport::load(&root).await?;
    let text = match args.format {
        ReportFormat::Json => serde_json::to_string_pretty(&report)
            .map_err(|e| Error::InvalidArgument(format!("cannot render the report: {e}")))?,
        ReportFormat::Markdown => report.to_markdown(),
        ReportFormat::Html => report.to_html(),
    };
    println!("{text}");
    Ok(())
}
