//! Building and running the server.

use crate::configuration::Settings;
use crate::ingest::Ingest;
use crate::kafka::KafkaSink;
use crate::metrics::Metrics;
use crate::routes::{self, AppState};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
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
    #[error("could not set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("could not start the HTTP server: {0}")]
    Server(std::io::Error),
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    sink: Arc<KafkaSink>,
    broker_ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    readiness_interval: Duration,
    shutdown_timeout: Duration,
}

impl Application {
    /// Creates the Kafka clients and binds the listener (port 0 picks a free port).
    pub fn build(settings: Settings) -> Result<Self, StartupError> {
        let metrics = Arc::new(Metrics::new()?);
        let sink = Arc::new(KafkaSink::new(&settings.kafka, metrics.clone())?);
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();
        let broker_ready = Arc::new(AtomicBool::new(false));
        let ingest = Ingest::new(&settings, sink.clone());
        let enabled = ingest.enabled_providers();
        if enabled.is_empty() {
            tracing::warn!("no provider has a signing secret: every webhook route answers 404 provider_disabled");
        }
        tracing::info!(port, providers = ?enabled, brokers = %settings.kafka.brokers, "starting");
        let state = web::Data::new(AppState {
            ingest,
            metrics: metrics.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            broker_ready: broker_ready.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
        })
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1))
        .listen(listener)
        .map_err(StartupError::Server)?
        .run();
        Ok(Self {
            port,
            server,
            sink,
            broker_ready,
            metrics,
            readiness_interval: settings.server.readiness_interval,
            shutdown_timeout: settings.server.shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT (or the server is stopped), then lets in-flight requests
    /// finish and flushes the producer, each bounded by `server.shutdown_timeout`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let readiness = tokio::spawn(probe_readiness(
            self.sink.clone(),
            self.broker_ready.clone(),
            self.metrics.clone(),
            self.readiness_interval,
        ));
        let served = self.server.await;
        readiness.abort();
        let sink = self.sink.clone();
        let timeout = self.shutdown_timeout;
        match tokio::task::spawn_blocking(move || sink.flush(timeout)).await {
            Ok(Ok(())) => tracing::info!("producer flushed; stopped"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "producer did not flush before the shutdown timeout")
            }
            Err(e) => tracing::error!(error = %e, "producer flush task failed"),
        }
        served
    }
}

/// Asks the cluster for metadata every `interval` and publishes the answer for `/readyz`.
async fn probe_readiness(
    sink: Arc<KafkaSink>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    let timeout = interval
        .min(Duration::from_secs(5))
        .max(Duration::from_millis(200));
    loop {
        let probe_sink = sink.clone();
        let ok = tokio::task::spawn_blocking(move || probe_sink.probe(timeout))
            .await
            .unwrap_or(false);
        if ok != ready.swap(ok, Ordering::Relaxed) {
            if ok {
                tracing::info!("broker reachable: ready");
            } else {
                tracing::warn!("broker unreachable: not ready");
            }
        }
        metrics.broker_ready.set(i64::from(ok));
        tokio::time::sleep(interval).await;
    }
}
