//! `patientflow demo`: produce → ingest → gold → serve on the embedded default.

use std::path::Path;

use std::sync::Arc;
use std::time::Duration;

use patientflow_ingest::producer::{KafkaSink, Pace};
use patientflow_ingest::source::kafka::Endpoint;
use patientflow_ingest::{FileSink, Ingest, Producer, Shape, Sink, TableRoot};
use patientflow_sql::Engine;
use patientflow_sql::rbac::Binding;

use super::{gold, serve, token};
use crate::auth::dev::DevKey;
use crate::automation;
use crate::cli::{DemoArgs, GoldStep};
use crate::config::Config;
use crate::error::{Error, Result};

/// The example roles the demo prints a token for, with their scope.
const DEMO_ROLES: [(&str, Option<i32>, Option<&str>); 4] = [
    ("network_admin", None, None),
    ("hospital_manager", Some(1), None),
    ("department_clinician", Some(1), Some("Emergency")),
    ("data_engineer", None, None),
];

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

pub(crate) async fn run(mut args: DemoArgs, config: &Config) -> Result<()> {
    let landing = args.dir.join("landing");
    if args.no_serve {
        return prepare(&args, &landing, config).await;
    }
    let kafka = args
        .kafka
        .as_ref()
        .map(|at| Endpoint::parse(&format!("kafka://{at}/{}", args.topic), |_| None))
        .transpose()?;
    let data = args.dir.join("data");
    let fresh = match &kafka {
        Some(_) => !data.join("bronze").exists(),
        None => is_empty(&landing),
    };
    let producer = if fresh {
        let sink: Box<dyn Sink + Send> = match &kafka {
            Some(endpoint) => Box::new(KafkaSink::new(endpoint, &config.kafka)?),
            None => Box::new(FileSink::new(&landing, "events", 100_000)?.live()),
        };
        Some(start_producer(&args, sink)?)
    } else {
        eprintln!(
            "demo: {} has events already: following it (remove {} for a new live simulation)",
            landing.display(),
            args.dir.display()
        );
        None
    };
    let root = demo_root(&data)?;
    // The demo's pipeline is a job of the same scheduler as `patientflow run`: the stream
    // (the history lands in the first micro-batches, then the dashboard moves with every new
    // event), its run history and alerts.
    let from = match &kafka {
        Some(endpoint) => format!("kafka://{}/{}", endpoint.brokers, endpoint.topic),
        None => landing.display().to_string(),
    };
    let mut demo_config = config.clone();
    demo_config.jobs = vec![demo_job(&from)?];
    let jobs = automation::jobs(&demo_config.run, &demo_config.jobs)?;
    let engine = Arc::new(Engine::new(
        root.clone(),
        serve::model(&args.service, config)?,
        serve::engine_config(&args.service, config),
    )?);
    let (scheduler, mut tasks) =
        super::run::start(jobs, root.clone(), engine, &demo_config).await?;
    eprintln!(
        "demo: following {from} into {} (bronze → silver → gold, a micro-batch every half second)",
        data.display()
    );
    // The demo trusts development tokens, with its own key, and prints one per example role.
    args.service.auth.dev_tokens = true;
    let key_path = args
        .service
        .auth
        .local
        .dev_key
        .get_or_insert_with(|| args.dir.join("dev-signing-key.pem"))
        .clone();
    let mut settings = serve::settings(root, &args.service, config)?;
    settings.stream = scheduler.stream_status();
    settings.scheduler = Some(scheduler.clone());
    let key = DevKey::load_or_create(&key_path)?;
    let ttl = Duration::from_secs(12 * 3600);
    let mut admin = String::new();
    println!(
        "development tokens, 12 h (REST: `Authorization: Bearer <token>`; ADBC: adbc.flight.sql.authorization_header):"
    );
    for (role, hospital, department) in DEMO_ROLES {
        let binding = Binding {
            hospital,
            department: department.map(String::from),
        };
        let token = token::mint(&key, &settings.policies, role, &binding, role, ttl)?;
        println!("  {role}: {token}");
        if role == "network_admin" {
            admin = token;
        }
    }

    let served = serve::serve(settings, Some(&admin)).await;
    super::run::stop(&scheduler, &mut tasks).await;
    drop(producer);
    served?;
    if let Some(status) = scheduler.stream_status() {
        let s = status.snapshot();
        eprintln!(
            "demo: {} records in {} batch(es), {} quarantined, {} duplicates",
            s.records, s.batches, s.quarantined, s.duplicates
        );
    }
    Ok(())
}

/// The demo's one job: the stream from `from`.
fn demo_job(from: &str) -> Result<automation::JobConfig> {
    toml::from_str(&format!(
        "name = \"adt-stream\"\nkind = \"stream\"\nfrom = {}\n",
        toml::Value::String(from.to_string())
    ))
    .map_err(|e| Error::Jobs(format!("the demo's job: {e}")))
}

/// `--no-serve`: the history up to now, landed and built into gold once.
async fn prepare(args: &DemoArgs, landing: &Path, config: &Config) -> Result<()> {
    if is_empty(landing) {
        let mut sink = FileSink::new(landing, "events", 100_000)?;
        Producer::new(args.events, Shape::Adt)
            .with_seed(42)
            .run(&mut sink)?;
    }
    let data = args.dir.join("data");
    let root = demo_root(&data)?;
    let mut ingest = Ingest::new(root.clone(), landing);
    if let Some(refresh) = gold::after_ingest(&root, &gold_step(), config)? {
        ingest = ingest.with_gold(refresh);
    }
    let metrics = ingest.run().await?;
    println!(
        "tables ready under {} ({} records in); serve them with `patientflow serve --data {}`",
        data.display(),
        metrics.counts.records_in,
        data.display()
    );
    Ok(())
}

/// The demo's table root.
fn demo_root(data: &Path) -> Result<TableRoot> {
    Ok(TableRoot::parse(data.to_str().ok_or_else(|| {
        Error::InvalidArgument(format!("{} is not UTF-8", data.display()))
    })?)?)
}

/// Gold after every batch, as of now.
fn gold_step() -> GoldStep {
    GoldStep {
        no_gold: false,
        gold: crate::cli::GoldArgs {
            as_of: None,
            tracked: Vec::new(),
            rows_per_slice: None,
        },
    }
}

/// Starts the simulated network on a thread of its own: the history into the landing folder
/// at once, the last `--replay-hours` at `--speed` until the replay meets the clock, then the
/// day ahead as it happens.
fn start_producer(
    args: &DemoArgs,
    mut sink: Box<dyn Sink + Send>,
) -> Result<std::thread::JoinHandle<()>> {
    let now = chrono::Utc::now().timestamp_micros();
    let hour = 3_600_000_000i64;
    let replay_from = now - (args.replay_hours.max(0.0) * hour as f64) as i64;
    let live = if args.speed > 1.0 {
        let minutes = args.replay_hours.max(0.0) * 60.0 / (args.speed - 1.0);
        format!("live after {minutes:.0} min")
    } else {
        format!("{} h behind the clock", args.replay_hours)
    };
    eprintln!(
        "demo: simulating {} events (history at once, the last {} h at {}× speed, {live})",
        args.events, args.replay_hours, args.speed
    );
    let producer = Producer::new(args.events, Shape::Adt)
        .with_seed(42)
        .with_until(now + 24 * hour)
        .with_pace(Pace::new(replay_from, now, args.speed));
    std::thread::Builder::new()
        .name("patientflow-demo-producer".into())
        .spawn(move || {
            if let Err(e) = producer.run(sink.as_mut()) {
                tracing::warn!(error = %e, "the demo's producer stopped");
            }
        })
        .map_err(|e| Error::Serve(format!("cannot start the demo's producer: {e}")))
}
