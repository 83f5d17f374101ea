//! The small fixed sets every layer speaks in: the error code of an answer, and the reason and
//! class of a failed write. They are plain data, so the Kafka sink, the metrics and the log lines
//! can name them without knowing the HTTP error type (`crate::error`) or librdkafka's errors.

/// The stable, machine-readable code of every answer that is not 2xx: the `error` of the JSON
/// body and the `reason` label of `hookstream_webhooks_rejected_total`. `crate::error` maps each
/// to its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    UnknownProvider,
    ProviderDisabled,
    NotFound,
    MethodNotAllowed,
    /// A query string an admin endpoint does not take (`GET /rejections?…`).
    InvalidQuery,
    MissingSignature,
    InvalidSignature,
    /// A signed timestamp too far from now: a replayed request (or a clock far off).
    SignatureExpired,
    InvalidBody,
    InvalidJson,
    InvalidPayload,
    PayloadTooLarge,
    RequestTimeout,
    Overloaded,
    BrokerUnavailable,
    SchemaRegistryUnavailable,
    DedupeUnavailable,
    ProduceFailed,
    InternalError,
    ShuttingDown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Error codes a delivery is dead-lettered for (the `reason` label set of
/// `hookstream_webhooks_dead_lettered_total`).
pub const DEAD_LETTER_REASONS: [ErrorCode; 3] = [
    ErrorCode::InvalidJson,
    ErrorCode::InvalidPayload,
    ErrorCode::PayloadTooLarge,
];

/// Why a message was not acknowledged (the `reason` label of
/// `hookstream_kafka_produce_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum FailureReason {
    /// No acknowledgement within the message's timeout: the broker is slow, frozen or gone.
    Timeout,
    /// The request's deadline (`kafka.ack_timeout`) passed before its message could be enqueued,
    /// e.g. while its topic was being created. Nothing was written.
    Deadline,
    /// The producer queue is full; answered at once, nothing was written.
    QueueFull,
    /// The broker is unreachable, electing a leader, or said "retry".
    BrokerUnavailable,
    /// The producer hit a state it cannot leave: a librdkafka fatal error, fenced, or its epoch,
    /// sequence or producer id lost by the cluster. The producer is replaced.
    ProducerUnusable,
    /// librdkafka failed without a Kafka error code.
    ClientError,
    /// The record is larger than the broker accepts for the topic.
    MessageTooLarge,
    /// The cluster refused the credentials (SASL), or hookstream knows it does and did not
    /// try: the operator must fix the Secret; the provider retries meanwhile.
    NotAuthenticated,
    /// The TLS handshake with the cluster failed (a certificate refused, or none given), or
    /// hookstream knows it does and did not try.
    Tls,
    /// The cluster refused an operation to these credentials (no ACL allows it).
    NotAuthorized,
    /// The topic or its configuration is invalid; retrying cannot help.
    Rejected,
}

/// What is wrong between hookstream and the cluster, by what an operator must fix: the label of
/// `hookstream_kafka_client_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum ClientErrorKind {
    /// The cluster refused the credentials (SASL).
    Authentication,
    /// The credentials were accepted, an operation was not (no ACL allows it).
    Authorization,
    /// The TLS handshake failed: a certificate the other side does not accept, or none.
    Tls,
    /// The connection failed or was lost (refused, reset, no such host).
    Transport,
}

impl ClientErrorKind {
    pub fn label(self) -> &'static str {
        self.into()
    }

    /// What an operator reads first: the start of every detail of this kind.
    pub fn heading(self) -> &'static str {
        match self {
            ClientErrorKind::Authentication => "kafka authentication failed",
            ClientErrorKind::Authorization => "kafka not authorized",
            ClientErrorKind::Tls => "kafka TLS handshake failed",
            ClientErrorKind::Transport => "kafka connection failed",
        }
    }
}

/// How the caller should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Worth retrying later: 503 with `Retry-After`.
    Retriable,
    /// The message itself is too large: 413.
    TooLarge,
    /// Retrying cannot fix it: 500.
    Permanent,
}

impl FailureReason {
    pub fn label(self) -> &'static str {
        self.into()
    }

    pub fn class(self) -> FailureClass {
        match self {
            FailureReason::MessageTooLarge => FailureClass::TooLarge,
            FailureReason::NotAuthorized | FailureReason::Rejected => FailureClass::Permanent,
            _ => FailureClass::Retriable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn codes_are_snake_case_and_unique() {
        let codes: Vec<&str> = ErrorCode::iter().map(ErrorCode::as_str).collect();
        assert!(codes.contains(&"schema_registry_unavailable"));
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
    }

    #[test]
    fn labels_are_snake_case_and_unique() {
        let labels: Vec<_> = FailureReason::iter().map(FailureReason::label).collect();
        assert!(labels.contains(&"producer_unusable") && labels.contains(&"queue_full"));
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len());
    }
}
