//! Produce failures, told apart by what the caller should do about them.
//!
//! Every failure has a [`FailureReason`] (a metric label from a small fixed set). The reason
//! decides the answer: most are retriable (503, the provider retries), a message the broker finds
//! too large is 413, and only what retrying cannot fix — authorization, an invalid topic or its
//! configuration — is 500. A broker-side state (fenced, unknown producer id, a frozen broker) is
//! never a 500.

use crate::codes::{FailureClass, FailureReason};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Whether a delivery failing for `reason` means the producer instance must be replaced: it is
/// unusable, or it may be stuck (a timed-out idempotent producer whose producer id the cluster
/// forgot keeps failing while metadata requests look healthy).
pub fn replaces_producer(reason: FailureReason) -> bool {
    matches!(
        reason,
        FailureReason::Timeout | FailureReason::ProducerUnusable
    )
}

/// A write that was not acknowledged. The detail never contains message contents or secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", match (reason, reason.class()) {
    (FailureReason::NotAuthenticated | FailureReason::Tls, _) => "nothing was written",
    (_, FailureClass::Retriable) => "the broker did not acknowledge the write",
    (_, FailureClass::TooLarge) => "the message is larger than the broker accepts",
    (_, FailureClass::Permanent) => "the broker rejected the write",
})]
pub struct PublishError {
    pub reason: FailureReason,
    pub detail: String,
    /// librdkafka's error, when there was one.
    #[source]
    pub source: Option<Box<KafkaError>>,
}

impl PublishError {
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            source: None,
        }
    }

    pub fn class(&self) -> FailureClass {
        self.reason.class()
    }

    /// The request's deadline passed with no delivery report.
    pub fn timed_out() -> Self {
        Self::new(
            FailureReason::Timeout,
            "no acknowledgement within kafka.ack_timeout",
        )
    }

    /// Classifies a librdkafka error from a delivery report, an enqueue or an admin request.
    /// `fatal` is the producer's fatal error, if it has one.
    pub fn classify(
        context: &'static str,
        err: &KafkaError,
        fatal: Option<(RDKafkaErrorCode, String)>,
    ) -> Self {
        if let Some((code, why)) = fatal {
            return Self {
                source: Some(Box::new(err.clone())),
                ..Self::new(
                    FailureReason::ProducerUnusable,
                    format!("{context}: fatal producer error {code:?}: {why}"),
                )
            };
        }
        let detail = format!("{context}: {err}");
        // rust-rdkafka does not report the code of a failed admin operation as its error code.
        let code = match err {
            KafkaError::AdminOp(code) => Some(*code),
            other => other.rdkafka_error_code(),
        };
        let reason = code.map_or(FailureReason::ClientError, reason_for);
        Self {
            source: Some(Box::new(err.clone())),
            ..Self::new(reason, detail)
        }
    }
}

/// Whether `err` is the cluster denying the principal an operation (no ACL allows it).
pub fn is_denial(err: &KafkaError) -> bool {
    let code = match err {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    };
    matches!(
        code,
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
            | Some(RDKafkaErrorCode::ClusterAuthorizationFailed)
    )
}

/// What a CreateTopics request for `topic` failing with `err` means. A denial (the service
/// account may not create topics) names the topic and what would allow it.
pub fn create_topic_failed(topic: &str, err: &KafkaError) -> PublishError {
    let error = PublishError::classify("create topic", err, None);
    if !is_denial(err) {
        return error;
    }
    PublishError {
        detail: format!(
            "kafka not authorized to create topic {topic}: the service account needs CREATE on \
             it, or run `hookstream topics create` with an administrator's credentials ({err})"
        ),
        ..error
    }
}

fn reason_for(code: RDKafkaErrorCode) -> FailureReason {
    use FailureReason as R;
    use RDKafkaErrorCode as C;
    match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => {
            R::MessageTooLarge
        }
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue => {
            R::Timeout
        }
        C::QueueFull => R::QueueFull,
        C::Fatal
        | C::ProducerFenced
        | C::Fenced
        | C::InvalidProducerEpoch
        | C::OutOfOrderSequenceNumber
        | C::UnknownProducerId
        | C::InvalidProducerIdMapping
        | C::GaplessGuarantee => R::ProducerUnusable,
        C::SaslAuthenticationFailed | C::Authentication => R::NotAuthenticated,
        C::SSL => R::Tls,
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed => R::NotAuthorized,
        C::InvalidTopic
        | C::InvalidConfig
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidReplicaAssignment
        | C::PolicyViolation
        | C::InvalidRequiredAcks
        | C::InvalidRecord
        | C::UnsupportedForMessageFormat
        | C::UnsupportedCompressionType => R::Rejected,
        // Everything else is a broker-side state that can change: unreachable, no leader,
        // not enough replicas, purged, "retry", or a code this list does not know.
        _ => R::BrokerUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: RDKafkaErrorCode) -> FailureReason {
        PublishError::classify("produce", &KafkaError::MessageProduction(code), None).reason
    }

    #[test]
    fn retriable_too_large_and_permanent_errors_are_told_apart() {
        assert_eq!(
            reason(RDKafkaErrorCode::MessageTimedOut),
            FailureReason::Timeout
        );
        assert_eq!(
            reason(RDKafkaErrorCode::AllBrokersDown),
            FailureReason::BrokerUnavailable
        );
        assert_eq!(
            reason(RDKafkaErrorCode::MessageSizeTooLarge).class(),
            FailureClass::TooLarge
        );
        assert_eq!(
            reason(RDKafkaErrorCode::TopicAuthorizationFailed),
            FailureReason::NotAuthorized
        );
        assert_eq!(
            reason(RDKafkaErrorCode::InvalidTopic).class(),
            FailureClass::Permanent
        );
    }

    #[test]
    fn an_unusable_producer_is_retriable_and_replaced_never_a_500() {
        for code in [
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::UnknownProducerId,
            RDKafkaErrorCode::Fatal,
        ] {
            let r = reason(code);
            assert_eq!(r, FailureReason::ProducerUnusable, "{code:?}");
            assert_eq!(r.class(), FailureClass::Retriable, "{code:?}");
            assert!(replaces_producer(r), "{code:?}");
        }
    }

    #[test]
    fn a_fatal_producer_error_wins_over_the_reported_code() {
        let err = KafkaError::MessageProduction(RDKafkaErrorCode::Fatal);
        let e = PublishError::classify(
            "produce",
            &err,
            Some((RDKafkaErrorCode::ProducerFenced, "newer producer".into())),
        );
        assert_eq!(e.reason, FailureReason::ProducerUnusable);
        assert!(e.detail.contains("ProducerFenced"), "{}", e.detail);
    }

    #[test]
    fn failed_admin_operations_are_classified_by_their_code() {
        let invalid = KafkaError::AdminOp(RDKafkaErrorCode::InvalidReplicationFactor);
        assert_eq!(
            PublishError::classify("create topic", &invalid, None).reason,
            FailureReason::Rejected
        );
        let slow = KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut);
        assert_eq!(
            PublishError::classify("create topic", &slow, None).reason,
            FailureReason::Timeout
        );
    }

    #[test]
    fn a_denied_topic_creation_names_the_topic_and_the_missing_permission() {
        // The denial is injected: the test broker has no ACLs, so the code a cluster that
        // forbids topic creation answers CreateTopics with is built here.
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
        ] {
            let e =
                create_topic_failed("webhooks.livesession.js_error", &KafkaError::AdminOp(code));
            assert_eq!(e.reason, FailureReason::NotAuthorized, "{code:?}");
            assert_eq!(e.class(), FailureClass::Permanent, "{code:?}");
            assert!(
                e.detail.starts_with(
                    "kafka not authorized to create topic webhooks.livesession.js_error: the \
                     service account needs CREATE on it, or run `hookstream topics create` with \
                     an administrator's credentials ("
                ),
                "{}",
                e.detail
            );
            assert!(
                e.to_string().starts_with(
                    "the broker rejected the write: kafka not authorized to create topic"
                ),
                "{e}"
            );
        }
        // Other failures keep their classification and detail.
        let slow = create_topic_failed(
            "webhooks.x.y",
            &KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut),
        );
        assert_eq!(slow.reason, FailureReason::Timeout);
        assert!(slow.detail.starts_with("create topic: "), "{}", slow.detail);
    }

    #[test]
    fn unknown_broker_states_are_retriable() {
        assert_eq!(
            reason(RDKafkaErrorCode::ThrottlingQuotaExceeded).class(),
            FailureClass::Retriable
        );
        assert_eq!(
            reason(RDKafkaErrorCode::PurgeQueue),
            FailureReason::BrokerUnavailable
        );
    }
}
