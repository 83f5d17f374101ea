//! HTTP routes. Handlers are thin: they translate between HTTP and [`crate::ingest`].

mod health;
mod metrics;
mod rejections;
mod webhooks;

use crate::error::ApiError;
use crate::ingest::Ingest;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::providers::Registry;
use crate::readiness::Readiness;
use crate::rejections::Rejections;
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::Arc;
use std::time::Duration;

/// Shared by every worker.
pub struct AppState {
    pub ingest: Ingest,
    pub metrics: Arc<Metrics>,
    /// Largest body accepted (`server.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Longest wait for a whole body (`server.body_timeout`).
    pub body_timeout: Duration,
    /// Sent as `Retry-After` with `503 overloaded`.
    pub retry_after: Duration,
    /// Open connections and requests in progress.
    pub limits: Arc<Limits>,
    /// Set by the readiness probe task; read by `/readyz`.
    pub readiness: Arc<Readiness>,
    /// The latest rejected deliveries per provider; read by `/rejections`.
    pub rejections: Rejections,
}

/// The public port: webhooks, and `/healthz` for load balancers. Metrics and readiness are on
/// the admin port only ([`admin`]): anyone could read traffic figures here.
pub fn public(cfg: &mut web::ServiceConfig, registry: &Registry) {
    let post_only = || web::to(|| async { ApiError::MethodNotAllowed("POST").into_response() });
    // One plain path per provider: matched by comparing strings, not by a pattern (matching the
    // pattern cost 5 % of a webhook's CPU).
    for provider in registry.iter() {
        let name = provider.name();
        cfg.service(
            web::resource(format!("/webhooks/{name}"))
                .route(web::post().to(
                    move |req: HttpRequest, payload: web::Payload, state: web::Data<AppState>| {
                        webhooks::receive(name, req, payload, state)
                    },
                ))
                .default_service(post_only()),
        );
    }
    cfg.service(
        web::resource("/webhooks/{provider}")
            .route(web::post().to(webhooks::receive_other))
            .default_service(post_only()),
    )
    .route("/healthz", web::get().to(health::healthz))
    .default_service(not_found());
}

/// The admin port (`server.admin_port`): metrics, probes and the latest rejected deliveries,
/// never published.
pub fn admin(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/rejections", web::get().to(rejections::rejections))
        .default_service(not_found());
}

fn not_found() -> actix_web::Route {
    web::to(|| async { ApiError::NotFound.into_response() })
}

impl ApiError {
    fn into_response(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}
