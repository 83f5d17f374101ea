//! `POST /webhooks/{provider}`.

use super::AppState;
use crate::error::ApiError;
use crate::ingest::{Outcome, Providers};
use crate::internal_events::{
    HandshakeAnswered, InternalEvent, WebhookAccepted, WebhookAnswered, WebhookDeadLettered,
    WebhookDuplicate, WebhookRejected, WebhookSpooled,
};
use crate::limits::{BodyProgress, ConnectionSlot};
use crate::metrics::Metrics;
use crate::providers::Handshake;
use crate::rejections::{Delivery, HeaderNames, SignatureCheck, UNKNOWN};
use crate::signature::{HeaderSource, SignatureError};
use actix_web::http::header::{HeaderMap, CONTENT_LENGTH};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Most bytes read of a body that came without a signature (it can only be a handshake).
const MAX_UNSIGNED_BODY_BYTES: usize = 4 * 1024;
/// Most bytes reserved for a body before any of it arrived.
const INITIAL_BODY_CAPACITY: usize = 4 * 1024;

struct Headers<'a>(&'a HeaderMap);

impl HeaderSource for Headers<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|v| v.as_bytes())
    }
}

impl HeaderNames for Headers<'_> {
    fn present(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// `/webhooks/{provider}` for a path that names no registered provider (those have routes of
/// their own, matched without a pattern).
pub async fn receive_other(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    receive(&path.into_inner(), req, payload, state).await
}

/// `POST /webhooks/{name}`.
pub async fn receive(
    name: &str,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    // The providers and secrets of this moment: a reload while the request runs does not
    // change what it is verified and answered with.
    let providers = state.ingest.providers();
    let found = providers.registry().find(name);
    let provider = found.map_or(UNKNOWN, |p| p.name());
    let mut event_id = None;
    let mut body = None;
    let result = handle(
        &req,
        name,
        payload,
        &state,
        &providers,
        &mut event_id,
        &mut body,
    )
    .await;
    let m = &state.metrics;
    let response = match &result {
        Ok(outcome) => {
            emit_outcome(provider, event_id.as_deref(), outcome, m);
            success_response(outcome)
        }
        Err(error) => {
            let response = error.error_response();
            let secrets = found.map_or(0, |p| providers.secret_count(p));
            WebhookRejected {
                provider,
                event_id: event_id.as_deref(),
                code: error.code(),
                detail: error,
                delivery: Delivery {
                    remote: req.peer_addr(),
                    status: response.status().as_u16(),
                    headers: &Headers(req.headers()),
                    content_length: declared_length(&req),
                    body: body.as_deref(),
                    signature: signature_check(error, secrets),
                },
                rejections: &state.rejections,
            }
            .emit(m);
            response
        }
    };
    WebhookAnswered {
        provider,
        status: response.status(),
        elapsed: started.elapsed(),
    }
    .emit(m);
    response
}

/// What the signature check found, when it decided the answer; `secrets`: how many the provider
/// has (each was tried when a well-formed signature matched none).
fn signature_check(error: &ApiError, secrets: usize) -> Option<SignatureCheck> {
    let ApiError::Signature(error) = error else {
        return None;
    };
    Some(match *error {
        SignatureError::Missing(header) => SignatureCheck::Missing { header },
        SignatureError::Malformed { header, .. } => SignatureCheck::Malformed { header },
        SignatureError::Mismatch => SignatureCheck::Mismatch {
            secrets_tried: secrets,
        },
        SignatureError::Expired {
            skew_secs,
            tolerance_secs,
        } => SignatureCheck::Expired {
            skew_secs,
            tolerance_secs,
        },
    })
}

/// The body length the request declares (`Content-Length`), when it declares one.
fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// `dead_letter_id`: the event id of a dead letter, when its body had one.
fn emit_outcome(provider: &str, dead_letter_id: Option<&str>, outcome: &Outcome, m: &Metrics) {
    match outcome {
        Outcome::Accepted {
            event_id,
            topic,
            partition,
            offset,
        } => WebhookAccepted {
            provider,
            event_id,
            topic,
            partition: *partition,
            offset: *offset,
        }
        .emit(m),
        Outcome::Spooled {
            event_id, topic, ..
        } => WebhookSpooled {
            provider,
            event_id,
            topic,
        }
        .emit(m),
        Outcome::Duplicate { event_id } => WebhookDuplicate { provider, event_id }.emit(m),
        Outcome::Handshake(_) => HandshakeAnswered { provider }.emit(m),
        Outcome::DeadLettered {
            error,
            detail,
            duplicate: false,
        } => WebhookDeadLettered {
            provider,
            event_id: dead_letter_id,
            error,
            detail,
        }
        .emit(m),
        Outcome::DeadLettered {
            duplicate: true, ..
        } => WebhookDuplicate {
            provider,
            event_id: dead_letter_id.unwrap_or_default(),
        }
        .emit(m),
    }
}

/// `event_id` is set once the body's event id is known, and `received` once the whole body
/// arrived (the record of rejected deliveries keeps its length and digest).
async fn handle(
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
    state: &AppState,
    providers: &Providers,
    event_id: &mut Option<String>,
    received: &mut Option<Vec<u8>>,
) -> Result<Outcome, ApiError> {
    if req
        .conn_data::<ConnectionSlot>()
        .is_some_and(|c| c.over_limit)
    {
        return Err(overloaded(state, "too many open connections"));
    }
    let provider = providers.provider(name)?;
    let headers = Headers(req.headers());
    let scheme = provider.signature();
    // An unsigned request is refused before its body is read; only a provider's handshake may
    // come unsigned, and a handshake is tiny.
    let signed = scheme.is_present(&headers);
    if !signed && !provider.accepts_unsigned_handshake() {
        return Err(SignatureError::Missing(scheme.primary_header()).into());
    }
    let limit = if signed {
        state.max_body_bytes
    } else {
        MAX_UNSIGNED_BODY_BYTES
    };
    let received_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let body = received.insert(receive_body(req, payload, limit, state).await.map_err(
        |e| match e {
            ApiError::PayloadTooLarge { .. } if !signed => {
                SignatureError::Missing(scheme.primary_header()).into()
            }
            other => other,
        },
    )?);
    let _permit = state
        .limits
        .begin_request()
        .ok_or_else(|| overloaded(state, "too many requests in progress"))?;
    state
        .ingest
        .ingest(providers, provider, &headers, body, received_at, event_id)
        .await
}

fn overloaded(state: &AppState, what: &'static str) -> ApiError {
    ApiError::Overloaded {
        what,
        retry_after: state.retry_after,
    }
}

/// Receives the whole body within `server.body_timeout`, holding one of a bounded number of
/// body slots (see [`crate::limits`]).
async fn receive_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    state: &AppState,
) -> Result<Vec<u8>, ApiError> {
    let mut slot = state.limits.begin_body().map_err(|_| {
        overloaded(
            state,
            "too many bodies arriving at once, all of them making progress",
        )
    })?;
    let read = read_body(req, payload, limit, slot.progress());
    tokio::select! {
        body = tokio::time::timeout(state.body_timeout, read) => {
            body.map_err(|_| ApiError::RequestTimeout { limit: state.body_timeout })?
        }
        () = slot.cut_off() => Err(overloaded(
            state,
            "too many bodies arriving at once, and this one was arriving the slowest",
        )),
    }
}

/// Buffers the body, refusing it as soon as it is known to exceed `limit`.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    progress: BodyProgress,
) -> Result<Vec<u8>, ApiError> {
    let declared = declared_length(req);
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // The declared length is a promise the client may not keep: reserve room for a typical
    // body at most, and grow only with what actually arrives.
    let hint = declared.map_or(0, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut body = Vec::with_capacity(hint.min(INITIAL_BODY_CAPACITY));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(ApiError::BodyRead)?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        progress.received(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The JSON body of a 200 (serialized straight from borrowed fields).
#[derive(serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Answer<'a> {
    Accepted {
        event_id: &'a str,
        topic: &'a str,
    },
    /// On local disk, fsynced, on its way to Kafka.
    Spooled {
        event_id: &'a str,
        topic: &'a str,
        /// Why the broker did not take it at once, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a str>,
    },
    Duplicate {
        event_id: &'a str,
    },
    DeadLettered {
        error: &'a str,
        detail: &'a str,
    },
    /// A signed ping (GitHub's): the endpoint is there and the secret is right.
    Ping,
}

fn success_response(outcome: &Outcome) -> HttpResponse {
    let answer = match outcome {
        Outcome::Accepted {
            event_id, topic, ..
        } => Answer::Accepted { event_id, topic },
        Outcome::Spooled {
            event_id,
            topic,
            why,
        } => {
            return HttpResponse::Accepted().json(Answer::Spooled {
                event_id,
                topic,
                detail: why.as_deref(),
            })
        }
        Outcome::Duplicate { event_id } => Answer::Duplicate { event_id },
        Outcome::DeadLettered { error, detail, .. } => Answer::DeadLettered { error, detail },
        Outcome::Handshake(Handshake::Ping) => Answer::Ping,
        Outcome::Handshake(Handshake::PlainText(challenge)) => {
            return HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body(challenge.clone())
        }
        Outcome::Handshake(Handshake::JsonChallenge(challenge)) => {
            return HttpResponse::Ok().json(serde_json::json!({ "challenge": challenge }))
        }
    };
    HttpResponse::Ok().json(answer)
}
