//! `POST /webhooks/{provider}`.

use super::AppState;
use crate::error::ApiError;
use crate::ingest::Outcome;
use crate::providers::{self, Handshake};
use crate::signature::HeaderSource;
use actix_web::http::header::{HeaderMap, CONTENT_LENGTH};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Headers<'a>(&'a HeaderMap);

impl HeaderSource for Headers<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|v| v.as_bytes())
    }
}

pub async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let name = path.into_inner();
    let label = providers::find(&name).map_or("unknown", |p| p.name());
    let result = handle(&req, &name, payload, &state).await;

    let m = &state.metrics;
    let response = match &result {
        Ok(outcome) => {
            match outcome {
                Outcome::Accepted { .. } => m.webhooks_accepted.with_label_values(&[label]).inc(),
                Outcome::Duplicate { .. } => {
                    m.webhooks_duplicates.with_label_values(&[label]).inc()
                }
                Outcome::Handshake(_) => m.handshakes.with_label_values(&[label]).inc(),
            }
            success_response(outcome)
        }
        Err(e) => {
            m.webhooks_rejected
                .with_label_values(&[label, e.code()])
                .inc();
            // The detail never contains secrets or signatures.
            tracing::warn!(provider = label, error = e.code(), detail = %e, "rejected");
            e.error_response()
        }
    };
    m.http_requests
        .with_label_values(&[label, response.status().as_str()])
        .inc();
    m.http_request_duration
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn handle(
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<Outcome, ApiError> {
    let provider = state.ingest.provider(name)?;
    let received_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let body = read_body(req, payload, state.max_body_bytes).await?;
    state
        .ingest
        .ingest(provider, &Headers(req.headers()), &body, received_at)
        .await
}

/// Buffers the body, refusing it as soon as it is known to exceed `limit`.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.map_or(8 * 1024, |l| l as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn success_response(outcome: &Outcome) -> HttpResponse {
    match outcome {
        Outcome::Accepted { event_id, topic } => HttpResponse::Ok().json(serde_json::json!({
            "status": "accepted", "event_id": event_id, "topic": topic,
        })),
        Outcome::Duplicate { event_id } => HttpResponse::Ok().json(serde_json::json!({
            "status": "duplicate", "event_id": event_id,
        })),
        Outcome::Handshake(Handshake::PlainText(challenge)) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(challenge.clone()),
        Outcome::Handshake(Handshake::JsonChallenge(challenge)) => {
            HttpResponse::Ok().json(serde_json::json!({ "challenge": challenge }))
        }
    }
}
