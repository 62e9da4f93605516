//! `patientflow demo`: produce → ingest → gold → serve on the embedded default.

use std::path::Path;

use patientflow_ingest::producer::write_ledger;
use patientflow_ingest::{FileSink, Ingest, Producer, Shape, TableRoot};

use std::time::Duration;

use patientflow_sql::rbac::Binding;

use super::{gold, serve, token};
use crate::auth::dev::DevKey;
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
    if is_empty(&landing) {
        eprintln!(
            "demo: simulating {} events into {}",
            args.events,
            landing.display()
        );
        let mut sink = FileSink::new(&landing, "events", 100_000)?;
        let ledger = Producer::new(args.events, Shape::Adt)
            .with_seed(42)
            .run(&mut sink)?;
        write_ledger(&ledger, &landing.join("_producer_ledger.json"))?;
    }
    let data = args.dir.join("data");
    let root = TableRoot::parse(
        data.to_str()
            .ok_or_else(|| Error::InvalidArgument(format!("{} is not UTF-8", data.display())))?,
    )?;
    eprintln!(
        "demo: ingesting {} into {} (bronze → silver → gold)",
        landing.display(),
        data.display()
    );
    let step = GoldStep {
        no_gold: false,
        gold: crate::cli::GoldArgs {
            as_of: None,
            tracked: Vec::new(),
            rows_per_slice: None,
        },
    };
    let mut ingest = Ingest::new(root.clone(), &landing);
    if let Some(refresh) = gold::after_ingest(&root, &step, config)? {
        ingest = ingest.with_gold(refresh);
    }
    let metrics = ingest.run().await?;
    eprintln!(
        "demo: {} records in, {} to silver, {} quarantined, {} duplicates",
        metrics.counts.records_in,
        metrics.counts.silver_rows,
        metrics.counts.quarantined,
        metrics.counts.duplicates
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
    let settings = serve::settings(root, &args.service, config)?;
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

    if args.no_serve {
        println!(
            "tables ready under {}; serve them with `patientflow serve --data {}`",
            data.display(),
            data.display()
        );
        return Ok(());
    }
    serve::serve(settings, Some(&admin)).await
}
