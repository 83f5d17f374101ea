//! Building and running the server, and reloading its configuration while it runs
//! ([`reload`]).

mod reload;
pub(crate) mod wiring;
mod workers;

pub use reload::Reload;
pub(crate) use wiring::Wiring;

use reload::Reloading;
use workers::{Background, Forwarder, ReadinessChecks};

use crate::avro::RegistryError;
use crate::configuration::{ConfigError, ServerSettings, Settings};
use crate::ingest::Ingest;
use crate::kafka::{CertificateFiles, KafkaSink};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::readiness::{Dependencies, Readiness};
use crate::rejections::Rejections;
use crate::routes::{self, AppState};
use crate::spool::Spool;
use crate::tls::Certificates;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("could not create the Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("could not create the schema registry client: {0}")]
    SchemaRegistry(#[from] RegistryError),
    #[error("could not set up TLS: {0}")]
    Tls(String),
    #[error("could not set up deduplication: {0}")]
    Dedupe(String),
    #[error("could not open the spool: {0}")]
    Spool(#[from] crate::spool::OpenError),
    #[error("could not set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("could not start the HTTP server: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The series of `providers` created at zero (a provider a reload adds).
fn provider_series(metrics: &Metrics, providers: &[&str]) {
    wiring::initialize_series(metrics, providers);
}

/// The listener and the port it got.
fn bind(host: &str, port: u16) -> Result<(TcpListener, u16), StartupError> {
    let address = format!("{host}:{port}");
    let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
        address: address.clone(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { address, source })?
        .port();
    Ok((listener, port))
}

/// The HTTP server with its routes, limits and timeouts (over TLS when `tls` is given).
fn http_server(
    listener: TcpListener,
    server: &ServerSettings,
    state: web::Data<AppState>,
    tls: Option<&Certificates>,
) -> Result<Server, StartupError> {
    let limits = state.limits.clone();
    let http = HttpServer::new(move || {
        let providers = state.ingest.providers().registry().clone();
        App::new()
            .app_data(state.clone())
            .configure(|cfg| routes::public(cfg, &providers))
    })
    // Every connection takes a slot; those beyond `max_connections` are answered 503.
    .on_connect(move |_, extensions| {
        extensions.insert(limits.connection_opened());
    })
    // actix's own per-worker cap is a backstop above ours: connections beyond ours are
    // accepted so they can be told 503, and the kernel's backlog holds the rest.
    .max_connections(server.max_connections + 1024)
    .client_request_timeout(server.header_timeout)
    .keep_alive(keep_alive(server))
    // Shutdown is driven by `Application::run_until_stopped`, which bounds the wait for
    // in-flight requests by `shutdown_timeout` to the millisecond; actix's own bound (whole
    // seconds) only backs it up.
    .disable_signals()
    .shutdown_timeout(server.shutdown_timeout.as_secs() + 1);
    let http = match tls {
        Some(certificates) => http.listen_rustls_0_23(listener, certificates.server_config()),
        None => http.listen(listener),
    };
    Ok(http.map_err(StartupError::Server)?.run())
}

/// `server.keep_alive`, for both ports. A graceful stop closes idle connections at once and the
/// others after their current response (actix-http), so a long keep-alive does not hold up a
/// shutdown.
fn keep_alive(server: &ServerSettings) -> actix_web::http::KeepAlive {
    if server.keep_alive.is_zero() {
        actix_web::http::KeepAlive::Disabled
    } else {
        actix_web::http::KeepAlive::Timeout(server.keep_alive)
    }
}

/// The admin server: metrics, probes and the latest rejected deliveries, on a port that is
/// never published.
fn admin_server(
    listener: TcpListener,
    server: &ServerSettings,
    state: web::Data<AppState>,
) -> Result<Server, StartupError> {
    Ok(
        HttpServer::new(move || App::new().app_data(state.clone()).configure(routes::admin))
            .workers(1)
            .client_request_timeout(server.header_timeout)
            .keep_alive(keep_alive(server))
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)
            .map_err(StartupError::Server)?
            .run(),
    )
}

/// A bound, not yet running server: its two ports and servers, the workers that run beside
/// them, and what stopping them needs.
pub struct Application {
    port: u16,
    admin_port: u16,
    /// `/webhooks/*` and `/healthz`: the port load balancers send to.
    server: Server,
    /// `/metrics`, `/healthz`, `/readyz`, `/rejections`: never published.
    admin: Server,
    background: Background,
    /// The spool's forwarder, when the spool is enabled: it runs through the drain.
    forwarder: Option<Forwarder>,
    shutdown: Shutdown,
}

/// What a shutdown needs: readiness to tell the load balancer, the sink to flush, the spool to
/// drain, and the bounds of each step.
struct Shutdown {
    readiness: Arc<Readiness>,
    sink: Arc<KafkaSink>,
    spool: Option<Arc<Spool>>,
    delay: Duration,
    timeout: Duration,
}

impl Application {
    /// Creates the Kafka clients and binds the listener (port 0 picks a free port).
    pub fn build(settings: Settings) -> Result<Self, StartupError> {
        let providers = settings.provider_registry()?;
        let wiring = Wiring::new(&settings, &providers.names())?;
        let metrics = wiring.metrics();
        let sink = wiring.sink(settings.spool.enabled)?;
        let schema_registry = wiring.schema_registry()?;
        let framing = wiring::framing(schema_registry.as_ref());
        let (listener, port) = bind(&settings.server.host, settings.server.port)?;
        let (admin_listener, admin_port) = bind(&settings.server.host, settings.server.admin_port)?;
        let spool = if settings.spool.enabled {
            Some(
                Spool::open(
                    &settings.spool.dir,
                    settings.spool.max_bytes,
                    metrics.clone(),
                )
                .map_err(StartupError::Spool)?,
            )
        } else {
            None
        };
        let readiness = Arc::new(Readiness::new(sink.clone(), spool.clone()));
        let dedupe = wiring.dedupe()?;
        let rejections = Rejections::new(
            providers
                .iter()
                .map(|p| (p.name(), crate::providers::expected_headers(p)))
                .collect(),
        );
        let ingest = Ingest::new(
            &settings,
            providers,
            sink.clone(),
            framing,
            dedupe.clone(),
            spool.clone(),
        )?;
        let enabled = ingest.enabled_providers();
        let forwarder = spool.clone().map(|spool| Forwarder {
            spool,
            sink: sink.clone(),
            forwarding: crate::spool::Forwarding {
                ack_timeout: settings.kafka.ack_timeout,
                providers: crate::spool::ForwardedProviders::new(enabled.clone()),
                dead_letter_topic: settings
                    .dead_letter
                    .enabled
                    .then(|| settings.dead_letter.topic(&settings.kafka.topic_prefix)),
                stall_after: stall_after(&settings),
            },
        });
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        tracing::info!(
            port,
            admin_port,
            tls = settings.server.tls.enabled(),
            providers = ?enabled,
            brokers = %settings.kafka.brokers,
            schema_registry = schema_registry.is_some(),
            "starting"
        );
        let state = web::Data::new(AppState {
            ingest,
            metrics: metrics.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            body_timeout: settings.server.body_timeout,
            retry_after: settings.server.retry_after,
            limits: Limits::new(
                settings.server.max_connections,
                settings.server.max_in_flight,
                metrics.clone(),
            ),
            readiness: readiness.clone(),
            rejections,
        });
        let tls = Certificates::load(&settings.server.tls)
            .map_err(StartupError::Tls)?
            .map(Arc::new);
        let server = http_server(listener, &settings.server, state.clone(), tls.as_deref())?;
        let admin = admin_server(admin_listener, &settings.server, state.clone())?;
        let shutdown = Shutdown {
            readiness: readiness.clone(),
            sink: sink.clone(),
            spool,
            delay: settings.server.shutdown_delay,
            timeout: settings.server.shutdown_timeout,
        };
        let background = Background {
            readiness: ReadinessChecks {
                readiness,
                dependencies: Dependencies {
                    registry: schema_registry,
                    dedupe,
                },
                metrics,
                interval: settings.server.readiness_interval,
            },
            tls,
            kafka_certificates: CertificateFiles::of(&settings.kafka).map(|files| (sink, files)),
            reload: None,
            reloading: Reloading {
                forwarded: forwarder.as_ref().map(|f| f.forwarding.providers.clone()),
                state,
                running: settings,
            },
        };
        Ok(Self {
            port,
            admin_port,
            server,
            admin,
            background,
            forwarder,
            shutdown,
        })
    }

    /// Reloads the providers and `log.level` while serving, as `reload` says
    /// (see [`reload`](self::reload)).
    pub fn reloading(mut self, reload: Reload) -> Self {
        self.background.reload = Some(reload);
        self
    }

    /// The public port: `/webhooks/*` and `/healthz`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin port: `/metrics`, `/healthz`, `/readyz` and `/rejections`.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The Kafka sink, for tests that inject producer faults.
    #[doc(hidden)]
    pub fn kafka(&self) -> Arc<KafkaSink> {
        self.shutdown.sink.clone()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down without dropping a request the load
    /// balancer still sends:
    /// 1. `/readyz` answers 503 `shutting_down` at once;
    /// 2. requests are still served for `server.shutdown_delay`;
    /// 3. the listener closes;
    /// 4. in-flight requests get up to `server.shutdown_timeout` to finish;
    /// 5. the producer gets up to `server.shutdown_timeout` to flush, while the spool's
    ///    forwarder goes on;
    /// 6. it returns (the process exits 0).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            admin,
            background,
            forwarder,
            shutdown,
            ..
        } = self;
        let forwarder = forwarder.map(Forwarder::spawn);
        let mut background = background.spawn();
        let admin_handle = admin.handle();
        let admin = tokio::spawn(admin);
        let serving = run_server_until_stopped(server, &shutdown);
        tokio::pin!(serving);
        let served = loop {
            tokio::select! {
                served = &mut serving => break served,
                Some(ended) = background.join_next() => workers::worker_ended(ended),
            }
        };
        drop(background);
        admin_handle.stop(true).await;
        let _ = admin.await;
        shutdown.flush(forwarder).await;
        served
    }
}

/// Serves until the server ends of itself, or until SIGTERM or SIGINT: then not ready, still
/// serving for `shutdown.delay`, and drained within `shutdown.timeout`.
async fn run_server_until_stopped(server: Server, shutdown: &Shutdown) -> std::io::Result<()> {
    let handle = server.handle();
    let mut server = tokio::spawn(server);
    tokio::select! {
        joined = &mut server => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        () = shutdown_signal() => {
            tracing::info!(
                delay_ms = shutdown.delay.as_millis() as u64,
                "shutting down: not ready from now on, serving until the delay is over"
            );
            shutdown.readiness.shutting_down();
            tokio::time::sleep(shutdown.delay).await;
            drain(handle, server, shutdown.timeout).await
        }
    }
}

impl Shutdown {
    /// Flushes the producer within `timeout`, while the spool's `forwarder` (still running)
    /// drains the spool within the same bound, then stops it; what it has not forwarded by then
    /// stays on disk for the next start.
    async fn flush(&self, forwarder: Option<tokio::task::JoinSet<()>>) {
        let sink = self.sink.clone();
        let timeout = self.timeout;
        let spool_drained = async {
            let Some(spool) = &self.spool else { return };
            let until = tokio::time::Instant::now() + timeout;
            // Not while the cluster refuses the credentials: nothing would drain.
            while !spool.is_empty()
                && self.sink.client_blocking().is_none()
                && tokio::time::Instant::now() < until
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let (flushed, ()) = tokio::join!(
            tokio::task::spawn_blocking(move || sink.flush(timeout)),
            spool_drained
        );
        drop(forwarder);
        match flushed {
            Ok(Ok(())) => tracing::info!("producer flushed; stopped"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "producer did not flush before the shutdown timeout")
            }
            Err(e) => tracing::error!(error = %e, "producer flush task failed"),
        }
    }
}

/// How long the spool's forwarder may go without an acknowledgement, while records wait and the
/// broker answers metadata, before it is called stalled and its producer replaced: five
/// readiness checks, and never less than two `kafka.ack_timeout`s.
pub(crate) fn stall_after(settings: &Settings) -> Duration {
    (settings.server.readiness_interval * 5).max(settings.kafka.ack_timeout * 2)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (terminate, interrupt) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    match (terminate, interrupt) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Closes the listener and waits up to `timeout` for in-flight requests; those still running
/// then end with the process.
async fn drain(
    handle: actix_web::dev::ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    timeout: Duration,
) -> std::io::Result<()> {
    let stopped = async {
        handle.stop(true).await;
        server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    match tokio::time::timeout(timeout, stopped).await {
        Ok(served) => {
            tracing::info!("listener closed; in-flight requests finished");
            served
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "in-flight requests did not finish within server.shutdown_timeout; they end with the process"
            );
            Ok(())
        }
    }
}
