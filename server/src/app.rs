//! The query service: the REST API and dashboard (axum) and Flight SQL (tonic) over one
//! query engine. `App::build` binds both ports, `run_until_stopped` serves until told to stop,
//! then drains in-flight requests for a bounded time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use patientflow_ingest::TableRoot;
use patientflow_semantic::Model;
use patientflow_sql::rbac::Policies;
use patientflow_sql::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::audit::AuditLog;
use crate::auth::{Auth, AuthSettings};
use crate::error::{Error, Result};
use crate::flight::{self, FlightSql};
use crate::http::{self, AppState, HttpStats};

/// Everything the query service needs, resolved from flags, environment and config file.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) root: TableRoot,
    pub(crate) http_addr: SocketAddr,
    pub(crate) flight_addr: SocketAddr,
    pub(crate) model: Model,
    pub(crate) engine: EngineConfig,
    /// PEM certificate and key for Flight SQL over TLS.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    /// Token issuers and keys.
    pub(crate) auth: AuthSettings,
    /// RBAC policies.
    pub(crate) policies: Policies,
    /// A streaming ingest running in this process, whose counters `/metrics` shows.
    pub(crate) stream: Option<Arc<patientflow_ingest::StreamStatus>>,
    /// The jobs this process runs, which `/api/v1/pipelines` drives.
    pub(crate) scheduler: Option<Arc<crate::automation::Scheduler>>,
}

/// How long in-flight requests get to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(10);

pub(crate) struct App {
    http: TcpListener,
    flight: TcpListener,
    state: AppState,
    flight_service: FlightSql,
    tls: Option<ServerTlsConfig>,
    audit: tokio::task::JoinHandle<()>,
}

impl App {
    pub(crate) async fn build(settings: Settings) -> Result<Self> {
        let timeout_secs = settings.engine.query_timeout.as_secs().min(i32::MAX as u64) as i32;
        let (audit_log, audit) = AuditLog::start(settings.root.clone());
        let engine = Arc::new(
            Engine::new(settings.root.clone(), settings.model, settings.engine)?
                .with_audit(Arc::new(audit_log)),
        );
        let auth = Arc::new(Auth::new(settings.auth, settings.policies).await?);
        let flight_service = FlightSql::new(Arc::clone(&engine), Arc::clone(&auth), timeout_secs)
            .map_err(|e| Error::Serve(format!("Flight SQL metadata: {e}")))?;
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                Error::Serve(format!("cannot listen for {what} on {addr}: {e}; pick another address with --{what}-addr"))
            })
        };
        let tls = match settings.tls {
            Some((cert, key)) => {
                // Several TLS backends are compiled in (object_store's and tonic's); pick one.
                // An error means a provider is installed already, which is as good.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let read = |p: &PathBuf| {
                    std::fs::read(p)
                        .map_err(|e| Error::Serve(format!("TLS file {}: {e}", p.display())))
                };
                Some(ServerTlsConfig::new().identity(Identity::from_pem(read(&cert)?, read(&key)?)))
            }
            None => None,
        };
        Ok(Self {
            http: bind(settings.http_addr, "http").await?,
            flight: bind(settings.flight_addr, "flight").await?,
            state: AppState {
                engine,
                root: settings.root,
                stats: Arc::new(HttpStats::new()),
                auth,
                stream: settings.stream,
                scheduler: settings.scheduler,
                quality: Arc::default(),
            },
            flight_service,
            tls,
            audit,
        })
    }

    pub(crate) fn http_addr(&self) -> Result<SocketAddr> {
        self.http.local_addr().map_err(Error::Output)
    }

    pub(crate) fn flight_addr(&self) -> Result<SocketAddr> {
        self.flight.local_addr().map_err(Error::Output)
    }

    /// Serves both doors until `stop` completes, then lets in-flight requests finish (at most
    /// ten seconds).
    pub(crate) async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            tracing::info!("stopping: draining in-flight requests");
            let _ = tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let http = axum::serve(self.http, http::router(self.state))
            .with_graceful_shutdown(stopped(rx.clone()));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| Error::Serve(format!("TLS: {e}")))?;
        }
        let flight = builder
            .add_service(flight::service(self.flight_service))
            .serve_with_incoming_shutdown(
                // No Nagle: small gRPC frames otherwise wait for the peer's delayed ACK (40 ms).
                TcpIncoming::from(self.flight).with_nodelay(Some(true)),
                stopped(rx.clone()),
            );
        let serve = async {
            tokio::try_join!(
                async { http.await.map_err(|e| Error::Serve(format!("HTTP: {e}"))) },
                async {
                    flight
                        .await
                        .map_err(|e| Error::Serve(format!("Flight SQL: {e}")))
                },
            )
        };
        let mut rx = rx;
        let served = tokio::select! {
            result = serve => result.map(|_| ()),
            () = async { let _ = rx.wait_for(|s| *s).await; tokio::time::sleep(DRAIN).await } => {
                tracing::warn!("requests still running after {DRAIN:?}; stopping anyway");
                Ok(())
            }
        };
        // The servers are gone, and with them the engine's audit sender: the writer makes
        // its last flush and ends.
        if tokio::time::timeout(DRAIN, self.audit).await.is_err() {
            tracing::warn!("the audit writer did not finish its last flush in time");
        }
        served
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
