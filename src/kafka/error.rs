//! Produce failures, told apart by what the caller should do about them.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Why a message was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Transient: the broker is unreachable, slow, or electing a leader. The provider should retry.
    #[error("the broker did not acknowledge the write: {detail}")]
    Unavailable {
        reason: &'static str,
        detail: String,
    },
    /// The message exceeds what the broker accepts; retrying cannot help.
    #[error("the message is larger than the broker accepts: {0}")]
    TooLarge(String),
    /// Anything else (authorization, invalid topic, a fatal producer state).
    #[error("the broker rejected the write: {detail}")]
    Rejected {
        reason: &'static str,
        detail: String,
    },
}

/// Every value [`PublishError::reason`] can return (metric label set).
pub const FAILURE_REASONS: &[&str] = &[
    "timeout",
    "queue_full",
    "broker_unavailable",
    "client_error",
    "message_too_large",
    "not_authorized",
    "rejected",
];

impl PublishError {
    /// A metric label from a small fixed set.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Unavailable { reason, .. } | PublishError::Rejected { reason, .. } => {
                reason
            }
            PublishError::TooLarge(_) => "message_too_large",
        }
    }

    /// No acknowledgement arrived in time (as opposed to the broker saying no).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            PublishError::Unavailable {
                reason: "timeout",
                ..
            }
        )
    }

    pub fn timed_out() -> Self {
        PublishError::Unavailable {
            reason: "timeout",
            detail: "no acknowledgement within kafka.ack_timeout".into(),
        }
    }

    /// Classifies a librdkafka error from a delivery report or an admin request.
    pub fn classify(context: &'static str, err: &KafkaError) -> Self {
        let detail = format!("{context}: {err}");
        let Some(code) = err.rdkafka_error_code() else {
            return PublishError::Unavailable {
                reason: "client_error",
                detail,
            };
        };
        use RDKafkaErrorCode as C;
        match code {
            C::MessageSizeTooLarge | C::InvalidMessageSize => PublishError::TooLarge(detail),
            C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut => {
                PublishError::Unavailable {
                    reason: "timeout",
                    detail,
                }
            }
            C::QueueFull => PublishError::Unavailable {
                reason: "queue_full",
                detail,
            },
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::NetworkException
            | C::Resolve
            | C::BrokerNotAvailable
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::UnknownTopicOrPartition
            | C::UnknownPartition
            | C::UnknownTopic
            | C::NotController
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::KafkaStorageError
            | C::OutOfOrderSequenceNumber
            | C::InvalidProducerEpoch
            | C::UnknownProducerId
            | C::PurgeQueue
            | C::PurgeInflight
            | C::Retry => PublishError::Unavailable {
                reason: "broker_unavailable",
                detail,
            },
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication => PublishError::Rejected {
                reason: "not_authorized",
                detail,
            },
            _ => PublishError::Rejected {
                reason: "rejected",
                detail,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_and_fatal_errors_are_told_apart() {
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(matches!(
            PublishError::classify("produce", &timeout),
            PublishError::Unavailable {
                reason: "timeout",
                ..
            }
        ));
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(
            PublishError::classify("produce", &down).reason(),
            "broker_unavailable"
        );
        let big = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(
            PublishError::classify("produce", &big),
            PublishError::TooLarge(_)
        ));
        let denied = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(
            PublishError::classify("produce", &denied).reason(),
            "not_authorized"
        );
    }
}
