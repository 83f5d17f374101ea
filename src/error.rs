//! Every way a webhook request can fail, and the one place each becomes an HTTP response.

use crate::avro::{EncodeError, RegistryError};
use crate::codes::ErrorCode;
use crate::codes::FailureClass;
use crate::dedupe::Unavailable;
use crate::kafka::PublishError;
use crate::providers::{JsonError, PayloadError};
use crate::readiness::NotReady;
use crate::signature::SignatureError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use std::time::Duration;

/// The HTTP status of every answer with `code`: the one place codes become statuses.
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::UnknownProvider | ErrorCode::ProviderDisabled | ErrorCode::NotFound => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MissingSignature | ErrorCode::InvalidSignature | ErrorCode::SignatureExpired => {
            StatusCode::UNAUTHORIZED
        }
        ErrorCode::InvalidBody
        | ErrorCode::InvalidJson
        | ErrorCode::InvalidPayload
        | ErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::Overloaded
        | ErrorCode::BrokerUnavailable
        | ErrorCode::SchemaRegistryUnavailable
        | ErrorCode::DedupeUnavailable
        | ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ProduceFailed | ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

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
    BodyRead(#[source] actix_web::error::PayloadError),
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
    #[error("{source}: try again later")]
    DedupeUnavailable {
        source: Unavailable,
        retry_after: Duration,
    },
    #[error("the schema could not be registered: {source}")]
    SchemaRegistry {
        source: RegistryError,
        retry_after: Duration,
    },
    #[error("{}", not_ready_detail(*why, cause.as_deref()))]
    NotReady {
        why: NotReady,
        /// What failed, in the words of what reported it (librdkafka's), when known.
        cause: Option<String>,
    },
    /// A bug: a record that does not match the schema.
    #[error("the event could not be encoded: {0}")]
    Encode(#[from] EncodeError),
    /// A bug: the write panicked.
    #[error("the write failed unexpectedly")]
    WriteTask,
    #[error("no route for this path")]
    NotFound,
    #[error("this path only accepts {0}")]
    MethodNotAllowed(&'static str),
    /// A query string an admin endpoint does not take: what is wrong with it.
    #[error("{0}")]
    InvalidQuery(String),
}

/// Why `/readyz` answers 503, and what failed when that is known. A Kafka authentication, TLS
/// or authorization failure is told in librdkafka's words, which name the kind first
/// (`kafka authentication failed: …`).
fn not_ready_detail(why: NotReady, cause: Option<&str>) -> String {
    let text = match why {
        NotReady::Broker => "the Kafka cluster did not answer the last metadata request",
        NotReady::Writes => "the latest write to Kafka was not acknowledged",
        NotReady::KafkaAuthentication => "kafka authentication failed: the cluster refused the credentials",
        NotReady::KafkaTls => "kafka TLS handshake failed",
        NotReady::KafkaAuthorization => "kafka not authorized: the cluster refused an operation every write needs",
        NotReady::SchemaRegistry => "the schema registry did not answer the last request",
        NotReady::ShuttingDown => "hookstream is shutting down: send no more requests here",
        NotReady::Dedupe => "redis (dedupe.backend) did not carry out the last check (a claim, release and commit on a probe key), and dedupe.redis.on_unavailable is \"reject\"",
        NotReady::SpoolFull => "the broker is not acknowledging writes and the spool is full (spool.max_bytes)",
        NotReady::SpoolUnwritable => "the broker is not acknowledging writes and the spool cannot be written (its last append failed: a full disk, a missing directory or an I/O error)",
        NotReady::SpoolStalled => "the spool holds records the broker accepts no longer: no spooled record was acknowledged for a while although the broker answers metadata (its producer is being replaced)",
        NotReady::SpoolUnreadable => "spooled records cannot be read back (an I/O error, such as no file descriptors left); they are kept and tried again",
    };
    match (why, cause) {
        (
            NotReady::KafkaAuthentication | NotReady::KafkaTls | NotReady::KafkaAuthorization,
            Some(cause),
        ) => cause.to_string(),
        (_, Some(cause)) => format!("{text} (latest client error: {cause})"),
        (_, None) => text.to_string(),
    }
}

impl ApiError {
    /// The stable, machine-readable code (also the `reason` metric label).
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::UnknownProvider(_) => ErrorCode::UnknownProvider,
            ApiError::ProviderDisabled(_) => ErrorCode::ProviderDisabled,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::BodyRead(_) => ErrorCode::InvalidBody,
            ApiError::RequestTimeout { .. } => ErrorCode::RequestTimeout,
            ApiError::Overloaded { .. } => ErrorCode::Overloaded,
            ApiError::Signature(SignatureError::Missing(_)) => ErrorCode::MissingSignature,
            ApiError::Signature(SignatureError::Expired { .. }) => ErrorCode::SignatureExpired,
            ApiError::Signature(_) => ErrorCode::InvalidSignature,
            ApiError::Json(_) => ErrorCode::InvalidJson,
            ApiError::Payload(_) => ErrorCode::InvalidPayload,
            ApiError::Publish { source, .. } => match source.class() {
                FailureClass::Retriable => ErrorCode::BrokerUnavailable,
                FailureClass::TooLarge => ErrorCode::PayloadTooLarge,
                FailureClass::Permanent => ErrorCode::ProduceFailed,
            },
            ApiError::SchemaRegistry { .. } => ErrorCode::SchemaRegistryUnavailable,
            ApiError::DedupeUnavailable { .. } => ErrorCode::DedupeUnavailable,
            ApiError::NotReady { why, .. } => match why {
                NotReady::Broker
                | NotReady::Writes
                | NotReady::KafkaAuthentication
                | NotReady::KafkaTls
                | NotReady::KafkaAuthorization
                | NotReady::SpoolFull
                | NotReady::SpoolUnwritable
                | NotReady::SpoolStalled
                | NotReady::SpoolUnreadable => ErrorCode::BrokerUnavailable,
                NotReady::SchemaRegistry => ErrorCode::SchemaRegistryUnavailable,
                NotReady::ShuttingDown => ErrorCode::ShuttingDown,
                NotReady::Dedupe => ErrorCode::DedupeUnavailable,
            },
            ApiError::Encode(_) | ApiError::WriteTask => ErrorCode::InternalError,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::InvalidQuery(_) => ErrorCode::InvalidQuery,
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
            | ApiError::DedupeUnavailable { retry_after, .. }
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
        status(self.code())
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
        response
            .json(serde_json::json!({ "error": self.code().as_str(), "detail": self.to_string() }))
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
        assert_eq!(err.code().as_str(), "broker_unavailable");
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "30");
    }

    #[test]
    fn payload_errors_name_the_field() {
        let err = ApiError::from(PayloadError::new("payload.event_name", "missing"));
        assert_eq!(err.code().as_str(), "invalid_payload");
        assert_eq!(err.to_string(), "payload.event_name: missing");
        assert_eq!(err.status_code(), StatusCode::BAD_REQUEST);
    }
}
