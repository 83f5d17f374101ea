//! Every way a webhook request can fail, and the one place each becomes an HTTP response.

use crate::avro::RegistryError;
use crate::kafka::{FailureClass, PublishError};
use crate::providers::{JsonError, PayloadError};
use crate::readiness::NotReady;
use crate::signature::SignatureError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use std::time::Duration;

/// A request that is not answered 2xx. The body is always `{"error": code, "detail": text}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no provider is called {0:?}")]
    UnknownProvider(String),
    #[error("the {0} provider has no signing secret configured")]
    ProviderDisabled(&'static str),
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {} s", limit.as_secs_f64())]
    RequestTimeout { limit: Duration },
    #[error("{what}: try again later")]
    Overloaded {
        what: &'static str,
        retry_after: Duration,
    },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("{source}")]
    Publish {
        source: PublishError,
        retry_after: Duration,
    },
    #[error("the schema could not be registered: {source}")]
    SchemaRegistry {
        source: RegistryError,
        retry_after: Duration,
    },
    #[error("{}", match .0 {
        NotReady::Broker => "the Kafka cluster did not answer the last metadata request",
        NotReady::Writes => "the latest write to Kafka was not acknowledged",
        NotReady::SchemaRegistry => "the schema registry did not answer the last request",
    })]
    NotReady(NotReady),
    #[error("the event could not be encoded: {0}")]
    Internal(String),
    #[error("no route for this path")]
    NotFound,
    #[error("this path only accepts {0}")]
    MethodNotAllowed(&'static str),
}

/// Every code a webhook request can be rejected with (the `reason` label set of
/// `hookstream_webhooks_rejected_total`).
pub const REJECTION_CODES: &[&str] = &[
    "unknown_provider",
    "provider_disabled",
    "payload_too_large",
    "invalid_body",
    "request_timeout",
    "overloaded",
    "missing_signature",
    "invalid_signature",
    "invalid_json",
    "invalid_payload",
    "broker_unavailable",
    "schema_registry_unavailable",
    "produce_failed",
    "internal_error",
];

impl ApiError {
    /// The stable, machine-readable code (also the `reason` metric label).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownProvider(_) => "unknown_provider",
            ApiError::ProviderDisabled(_) => "provider_disabled",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyRead(_) => "invalid_body",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Signature(SignatureError::Missing(_)) => "missing_signature",
            ApiError::Signature(_) => "invalid_signature",
            ApiError::Json(_) => "invalid_json",
            ApiError::Payload(_) => "invalid_payload",
            ApiError::Publish { source, .. } => match source.class() {
                FailureClass::Retriable => "broker_unavailable",
                FailureClass::TooLarge => "payload_too_large",
                FailureClass::Permanent => "produce_failed",
            },
            ApiError::SchemaRegistry { .. } => "schema_registry_unavailable",
            ApiError::NotReady(NotReady::Broker | NotReady::Writes) => "broker_unavailable",
            ApiError::NotReady(NotReady::SchemaRegistry) => "schema_registry_unavailable",
            ApiError::Internal(_) => "internal_error",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
        }
    }
}

impl ApiError {
    /// `Retry-After` for answers that mean "not now".
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Publish {
                source,
                retry_after,
            } if source.class() == FailureClass::Retriable => Some(*retry_after),
            ApiError::SchemaRegistry { retry_after, .. }
            | ApiError::Overloaded { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Answers given before or instead of reading the whole body close the connection: what is
    /// left of the body is never read, and a slow or hostile client gets no second request.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            ApiError::RequestTimeout { .. }
                | ApiError::Overloaded { .. }
                | ApiError::PayloadTooLarge { .. }
                | ApiError::Signature(SignatureError::Missing(_))
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::UnknownProvider(_) | ApiError::ProviderDisabled(_) | ApiError::NotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead(_) | ApiError::Json(_) | ApiError::Payload(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Signature(_) => StatusCode::UNAUTHORIZED,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Publish { source, .. } => match source.class() {
                FailureClass::Retriable => StatusCode::SERVICE_UNAVAILABLE,
                FailureClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                FailureClass::Permanent => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::SchemaRegistry { .. }
            | ApiError::NotReady(_)
            | ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(retry_after) = self.retry_after() {
            response.insert_header((
                header::RETRY_AFTER,
                retry_after.as_secs().max(1).to_string(),
            ));
        }
        if self.closes_connection() {
            response.force_close();
        }
        if let ApiError::MethodNotAllowed(allowed) = self {
            response.insert_header((header::ALLOW, *allowed));
        }
        response.json(serde_json::json!({ "error": self.code(), "detail": self.to_string() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_unavailable_is_503_with_retry_after() {
        let err = ApiError::Publish {
            source: PublishError::timed_out(),
            retry_after: Duration::from_secs(30),
        };
        assert_eq!(err.code(), "broker_unavailable");
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "30");
    }

    #[test]
    fn payload_errors_name_the_field() {
        let err = ApiError::from(PayloadError::new("payload.event_name", "missing"));
        assert_eq!(err.code(), "invalid_payload");
        assert_eq!(err.to_string(), "payload.event_name: missing");
        assert_eq!(err.status_code(), StatusCode::BAD_REQUEST);
    }
}
