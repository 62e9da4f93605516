//! The `patientflow` binary: one command line for producing, ingesting, building gold,
//! reporting, and serving the tables (dashboard, REST, Flight SQL).

mod app;
mod audit;
mod auth;
mod automation;
mod cli;
mod commands;
mod config;
mod error;
mod flight;
mod http;

use clap::Parser;

use crate::cli::{Cli, Command, GoldCommand, QualityCommand, SynapseCommand};
use crate::error::Result;

/// mimalloc: ingest and queries allocate and free large Arrow and Parquet buffers at a high
/// rate, which glibc's allocator turns into page faults (a fifth of ingest time). Its v2
/// (Cargo feature `v2`): a stream following Kafka at 1,000 events/s held 2.2 GiB after 90 s with
/// v3 (freed pages kept by its threads) against 1.2 GiB with v2, at the same freshness; a
/// one-shot ingest is about 8 % slower (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    log_panics();
    no_transparent_huge_pages();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = error::hint(&e) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Panics go to the log as one error line with their place (a backtrace only when
/// `RUST_BACKTRACE` asks for one). A library may panic inside a task that it catches and
/// turns into an error (object_store's writer does on a full disk, apache/arrow-rs-object-store
/// #810); the log then says so plainly instead of printing a stack dump.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!("panic at {location}: {message}\n{backtrace}");
        } else {
            tracing::error!("panic at {location}: {message}");
        }
    }));
}

/// Has mimalloc give memory back to the system as soon as it is freed, instead of 10 ms later at
/// the freeing thread's next allocation. Most of tokio's blocking-pool threads are idle at any
/// moment, and what an idle thread freed stayed committed: a follower at 1,000 events/s grew to
/// 1.7 GiB in 120 s, and to 1.0 GiB with this, for 5–15 % more CPU at the same freshness — on a
/// root whose long log replays kept ~200 threads busy. On a maintained root it still halves
/// the follower's memory (560–660 MiB against 1.1 GiB) for 20 % more CPU (BENCHMARKS.md).
/// Every stream asks for it when it opens (`commands::follow::open`:
/// `ingest --follow`, the stream jobs of `run` and `demo`).
pub(crate) fn purge_freed_memory_at_once() {
    /// `mi_option_purge_delay` in mimalloc.h (v2), which libmimalloc-sys does not name.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one integer option that mimalloc reads on each purge; 0 is a documented value
    // ("use 0 for immediate purging"), and nothing else is touched.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for them on its segments
/// (`madvise`), so on kernels where THP is `madvise` or `always` every first touch of freed and
/// purged memory faulted in and zeroed a whole 2 MiB page, after compacting memory to find
/// one: 12–40% of a 1M-stay ALOS query's CPU went to `clear_page` (BENCHMARKS.md, queries).
/// A data service is better off without them, as database vendors advise.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages stay as the kernel has them");
    }
}

/// The filter of `--log`: a bare level is that of patientflow's crates, the libraries' staying
/// at warnings (the Delta kernel's off: it logs a table not created yet as an error); anything
/// else is a filter as written.
fn log_filter(given: &str) -> String {
    let level = given.trim().to_ascii_lowercase();
    if level != "off" && level.parse::<tracing::Level>().is_err() {
        return given.to_string();
    }
    let libraries = if level == "off" {
        "off"
    } else {
        "warn,buoyant_kernel=off,deltalake_core=error"
    };
    let own = [
        "patientflow",
        "patientflow_ingest",
        "patientflow_semantic",
        "patientflow_sql",
    ];
    std::iter::once(libraries.to_string())
        .chain(own.iter().map(|c| format!("{c}={level}")))
        .collect::<Vec<_>>()
        .join(",")
}

fn init_logging(given: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(given))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter("info")));
    use std::io::IsTerminal;
    // Colour only on a terminal: a log file or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .init();
}

fn run(cli: Cli) -> Result<()> {
    let config = config::Config::load(cli.config.as_deref())?;
    // Twice as many workers as cores (at least four): a query whose operators run long between
    // yields occupies a worker, and the others must stay free to answer HTTP and Flight
    // requests and to fire the query time limit.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((2 * cores).max(4))
        .enable_all()
        .build()
        .map_err(error::Error::Runtime)?;
    let result = match cli.command {
        Command::Produce(args) => commands::produce::run(args, &config),
        Command::Ingest(args) => runtime.block_on(commands::ingest::run(args, &config)),
        Command::Quality(QualityCommand::Report(args)) => {
            runtime.block_on(commands::quality::report(args, &config))
        }
        Command::Gold(GoldCommand::Refresh(args)) => {
            runtime.block_on(commands::gold::refresh(args, &config))
        }
        Command::Serve(args) => runtime.block_on(commands::serve::run(args, &config)),
        Command::Demo(args) => runtime.block_on(commands::demo::run(args, &config)),
        Command::Token(args) => commands::token::run(args),
        Command::Synapse(SynapseCommand::Plan(args)) => {
            runtime.block_on(commands::synapse::plan(args, &config))
        }
        Command::Synapse(SynapseCommand::Apply(args)) => {
            runtime.block_on(commands::synapse::apply(args, &config))
        }
        Command::Maintain(args) => runtime.block_on(commands::maintain::run(args, &config)),
        Command::Run(args) => runtime.block_on(commands::run::run(args, &config)),
        Command::Gold(GoldCommand::Schema) => {
            print!("{}", patientflow_ingest::tables::star_schema_markdown());
            Ok(())
        }
        Command::Quality(QualityCommand::Rules) => {
            use patientflow_ingest::batch::rules::{
                DEPARTMENT_RULES, EHR_RULES, batch_rules_markdown,
            };
            print!("{}", patientflow_ingest::silver::rules_markdown());
            print!(
                "\nDepartment reference rows (`ingest batch --departments`):\n\n{}",
                batch_rules_markdown(DEPARTMENT_RULES)
            );
            print!(
                "\nEHR extract rows (`ingest batch --ehr`):\n\n{}",
                batch_rules_markdown(EHR_RULES)
            );
            Ok(())
        }
    };
    // Tasks still blocked (on storage that no longer answers) do not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn a_bare_level_is_patientflow_s_and_a_filter_is_taken_as_written() {
        let debug = log_filter("DEBUG");
        assert!(debug.starts_with("warn,buoyant_kernel=off,deltalake_core=error,"));
        assert!(debug.contains("patientflow_ingest=debug"), "{debug}");
        assert!(log_filter("off").split(',').all(|d| d.ends_with("off")));
        let written = "patientflow_ingest=trace,deltalake_core=info,warn";
        assert_eq!(log_filter(written), written);
    }
}
