//! `patientflow serve`: the query service over a table root.

use std::net::SocketAddr;
use std::time::Duration;

use patientflow_ingest::TableRoot;
use patientflow_semantic::Model;
use patientflow_sql::{AdmissionConfig, EngineConfig};

use std::path::Path;

use patientflow_sql::rbac::{MaskKey, Policies};

use crate::app::{App, Settings, stop_signal};
use crate::auth::{AuthSettings, KeySource, dev};
use crate::cli::{AuthArgs, ServeArgs, ServiceArgs};
use crate::config::Config;
use crate::error::{Error, Result};

/// The service settings from flags, then environment (clap), then the config file, then
/// defaults.
pub(crate) fn settings(root: TableRoot, args: &ServiceArgs, config: &Config) -> Result<Settings> {
    let c = &config.serve;
    let addr = |flag: &Option<String>,
                file: &Option<String>,
                default: &str,
                what: &str|
     -> Result<SocketAddr> {
        let text = flag.as_deref().or(file.as_deref()).unwrap_or(default);
        text.parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "--{what}-addr `{text}` is not an address such as 127.0.0.1:8080"
            ))
        })
    };
    let model = model(args, config)?;
    let engine = engine_config(args, config);
    let tls = match (
        args.tls_cert.clone().or(c.tls_cert.clone()),
        args.tls_key.clone().or(c.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(Error::InvalidArgument(
                "TLS needs both a certificate and a key (--tls-cert and --tls-key)".into(),
            ));
        }
    };
    Ok(Settings {
        auth: auth_settings(&args.auth, config)?,
        policies: policies(
            args.auth
                .local
                .policies
                .as_deref()
                .or(c.policies.as_deref()),
        )?,
        root,
        http_addr: addr(&args.http_addr, &c.http_addr, "127.0.0.1:8080", "http")?,
        flight_addr: addr(
            &args.flight_addr,
            &c.flight_addr,
            "127.0.0.1:50051",
            "flight",
        )?,
        model,
        engine,
        tls,
        stream: None,
        scheduler: None,
    })
}

/// The semantic model from the flag or the config file (else the built-in one), with the
/// bottleneck threshold they set.
pub(crate) fn model(args: &ServiceArgs, config: &Config) -> Result<Model> {
    model_from(args.model.as_deref(), args.bottleneck_threshold, config)
}

/// The model at `path` (else the config file's, else the built-in one), with the bottleneck
/// threshold given (else the config file's).
pub(crate) fn model_from(
    path: Option<&Path>,
    threshold: Option<f64>,
    config: &Config,
) -> Result<Model> {
    let c = &config.serve;
    let mut model = match path.or(c.model.as_deref()) {
        Some(path) => Model::from_file(path)?,
        None => Model::built_in()?,
    };
    if let Some(t) = threshold.or(c.bottleneck_threshold) {
        if !(0.0..=10.0).contains(&t) {
            return Err(Error::InvalidArgument(format!(
                "bottleneck threshold {t} is not a rate; use e.g. 0.85"
            )));
        }
        model.bottleneck_threshold = t;
    }
    Ok(model)
}

/// Query limits from flags, then the config file, then defaults.
pub(crate) fn engine_config(args: &ServiceArgs, config: &Config) -> EngineConfig {
    let c = &config.serve;
    let defaults = EngineConfig::default();
    let memory_limit = args
        .memory_limit_mb
        .or(c.memory_limit_mb)
        .map_or(defaults.memory_limit, |mb| mb << 20);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut admission = AdmissionConfig::for_machine(cores, memory_limit);
    if let Some(n) = args.max_executing_queries.or(c.max_executing_queries) {
        admission.max_executing = n.max(1);
        admission.max_per_principal = AdmissionConfig::per_principal(admission.max_executing);
        admission.max_queued = 32 * admission.max_executing;
    }
    if let Some(n) = c.max_executing_per_principal {
        admission.max_per_principal = n.clamp(1, admission.max_executing);
    }
    if let Some(n) = args.max_queued_queries.or(c.max_queued_queries) {
        admission.max_queued = n;
    }
    if let Some(secs) = args.queue_timeout.or(c.queue_timeout_secs) {
        admission.queue_timeout = Duration::from_secs(secs);
    }
    EngineConfig {
        query_timeout: args
            .query_timeout
            .or(c.query_timeout)
            .map_or(defaults.query_timeout, Duration::from_secs),
        memory_limit,
        admission,
        cache_entries: c.cache_entries.unwrap_or(defaults.cache_entries),
        mask_key: mask_key(config).unwrap_or_else(|| {
            tracing::warn!(
                "no mask key (PATIENTFLOW_MASK_KEY or serve.mask_key): hashed columns use a key of this process, so they change when it restarts and differ from Synapse"
            );
            defaults.mask_key.clone()
        }),
        ..defaults
    }
}

/// The deployment's mask key, from `PATIENTFLOW_MASK_KEY` or the config file.
pub(crate) fn mask_key(config: &Config) -> Option<MaskKey> {
    std::env::var("PATIENTFLOW_MASK_KEY")
        .ok()
        .or_else(|| config.serve.mask_key.clone())
        .filter(|k| !k.is_empty())
        .map(|k| MaskKey::new(k.as_bytes()))
}

/// The example policies shipped in `rbac-policies/`, built in.
const BUILT_IN_POLICIES: [(&str, &str); 4] = [
    (
        "rbac-policies/network_admin.yaml",
        include_str!("../../../rbac-policies/network_admin.yaml"),
    ),
    (
        "rbac-policies/hospital_manager.yaml",
        include_str!("../../../rbac-policies/hospital_manager.yaml"),
    ),
    (
        "rbac-policies/department_clinician.yaml",
        include_str!("../../../rbac-policies/department_clinician.yaml"),
    ),
    (
        "rbac-policies/data_engineer.yaml",
        include_str!("../../../rbac-policies/data_engineer.yaml"),
    ),
];

/// The policies at `path`, or the built-in example policies.
pub(crate) fn policies(path: Option<&Path>) -> Result<Policies> {
    match path {
        Some(path) => Ok(Policies::load(path)?),
        None => {
            let mut policies = Policies::default();
            for (file, text) in BUILT_IN_POLICIES {
                policies.add(Path::new(file), text)?;
            }
            Ok(policies)
        }
    }
}

/// Token issuers, audiences and keys from flags, environment and the config file.
fn auth_settings(args: &AuthArgs, config: &Config) -> Result<AuthSettings> {
    let c = &config.serve;
    let tenant = args.tenant.clone().or(c.tenant.clone());
    let mut keys = Vec::new();
    let mut issuers = if args.issuers.is_empty() {
        c.issuers.clone().unwrap_or_default()
    } else {
        args.issuers.clone()
    };
    let mut tenants = Vec::new();
    if let Some(tenant) = &tenant {
        keys.push(KeySource::Discovery(
            args.openid_config
                .clone()
                .or(c.openid_config.clone())
                .unwrap_or_else(|| {
                    format!("https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration")
                }),
        ));
        if issuers.is_empty() {
            issuers = vec![
                format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                format!("https://sts.windows.net/{tenant}/"),
            ];
        }
        tenants.push(tenant.clone());
    }
    if let Some(file) = args.jwks_file.clone().or(c.jwks_file.clone()) {
        // The file's keys sign for whom? Without a tenant only --issuer says.
        if issuers.is_empty() {
            return Err(Error::InvalidArgument(
                "--jwks-file needs the issuers to accept: pass --tenant or --issuer".into(),
            ));
        }
        keys.push(KeySource::File(file));
    }
    if args.dev_tokens {
        let path = args.local.dev_key.clone().unwrap_or_else(dev::default_path);
        keys.push(KeySource::Inline(
            dev::DevKey::load_or_create(&path)?.jwks(),
        ));
        issuers.push(dev::ISSUER.to_string());
        if !tenants.is_empty() {
            tenants.push(dev::TENANT.to_string());
        }
        tracing::warn!(key = %path.display(), "trusting development tokens (--dev-tokens); never on a production server");
    }
    if keys.is_empty() {
        return Err(Error::InvalidArgument(
            "no token issuer: pass --tenant <Entra ID tenant id> (or --jwks-file for a site without a route to Entra ID); on a laptop, --dev-tokens with tokens from `patientflow token`".into(),
        ));
    }
    let audiences = if args.audiences.is_empty() {
        c.audiences
            .clone()
            .unwrap_or_else(|| vec![dev::AUDIENCE.to_string()])
    } else {
        args.audiences.clone()
    };
    Ok(AuthSettings {
        issuers,
        audiences,
        tenants,
        keys,
    })
}

pub(crate) async fn run(args: ServeArgs, config: &Config) -> Result<()> {
    let root = config.table_root(args.data.as_deref())?;
    serve(settings(root, &args.service, config)?, None).await
}

/// Binds, says where, and serves until Ctrl-C or SIGTERM. With `dashboard_token`, the
/// dashboard link signs in with it.
pub(crate) async fn serve(settings: Settings, dashboard_token: Option<&str>) -> Result<()> {
    let tls = settings.tls.is_some();
    let app = App::build(settings).await?;
    let http = app.http_addr()?;
    let flight = app.flight_addr()?;
    // On stdout, one line each, so scripts (and the tests) can find the ports.
    match dashboard_token {
        Some(token) => println!("dashboard: http://{http}/#token={token}"),
        None => println!("dashboard: http://{http}/"),
    }
    println!("REST API: http://{http}/api/v1 (OpenAPI: http://{http}/api/openapi.json)");
    println!(
        "Flight SQL: grpc{}://{flight}",
        if tls { "+tls" } else { "" }
    );
    tracing::info!(%http, %flight, "serving; Ctrl-C to stop");
    app.run_until_stopped(stop_signal()).await
}
