//! What librdkafka says is wrong between hookstream and the cluster, told apart by what an
//! operator must fix: the credentials (authentication), the permissions (authorization), the
//! certificates (TLS) or the network (transport).
//!
//! librdkafka reports a failed connection to its error callback as soon as it happens (a wrong
//! password is `SASL SCRAM authentication failed: broker responded with invalid-proof`), while a
//! metadata request or a write only times out. Keeping the latest such report lets readiness,
//! `config check --connect` and the answer to a webhook name the cause at once, rather than say
//! "the broker did not answer" after the whole `kafka.ack_timeout`.

use crate::codes::ClientErrorKind;
use crate::internal_events::KafkaClientError;
use crate::metrics::Metrics;
use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The kind of a librdkafka error, from its code and, for a transport error, its text
/// (librdkafka reports some TLS failures, such as an alert the server sends after the
/// handshake, as a transport error whose text names SSL). `None`: not a connection error.
pub(crate) fn kind_of(code: RDKafkaErrorCode, reason: &str) -> Option<ClientErrorKind> {
    use ClientErrorKind as K;
    use RDKafkaErrorCode as C;
    match code {
        // A SASL handshake that timed out or lost its connection is the network's failure (a
        // frozen broker), not a refusal of the credentials.
        C::Authentication | C::SaslAuthenticationFailed if mentions_transport(reason) => {
            Some(K::Transport)
        }
        C::Authentication | C::SaslAuthenticationFailed => Some(K::Authentication),
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed => Some(K::Authorization),
        C::SSL => Some(K::Tls),
        C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve => {
            if mentions_tls(reason) {
                Some(K::Tls)
            } else {
                Some(K::Transport)
            }
        }
        _ => None,
    }
}

/// Whether librdkafka's text of an authentication error says the connection failed under it.
fn mentions_transport(reason: &str) -> bool {
    [
        "Timed out",
        "timed out",
        "transport failure",
        "Disconnected",
        "Connection refused",
    ]
    .iter()
    .any(|words| reason.contains(words))
}

/// Whether librdkafka's text of a transport error is a consequence of another failure ("1/1
/// brokers are down"), rather than a connection failing of its own.
fn consequence_only(reason: &str) -> bool {
    reason.contains("brokers are down")
}

/// Whether librdkafka's text of a transport error is about TLS.
fn mentions_tls(reason: &str) -> bool {
    reason.contains("SSL") || reason.contains("certificate") || reason.contains("TLS")
}

/// One failure, as an operator should read it: `kafka authentication failed: <librdkafka's
/// words>`. librdkafka's words name the broker and the mechanism, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFailure {
    pub kind: ClientErrorKind,
    pub detail: String,
}

impl std::fmt::Display for ClientFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.heading(), self.detail)
    }
}

/// Most topics remembered as denied: each is one line of `/readyz`, and a sender of free-form
/// event names must not grow the list without bound.
const MAX_DENIED_TOPICS: usize = 32;

#[derive(Default)]
struct State {
    /// The latest authentication or TLS failure since the cluster last answered. Kept apart
    /// from transport failures, which follow it (librdkafka then reports "all brokers down").
    refused: Option<ClientFailure>,
    /// The latest transport failure since the cluster last answered.
    transport: Option<ClientFailure>,
    /// Whether the latest metadata request (readiness's probe) was answered.
    probe_answered: bool,
    /// Topics the cluster would not let hookstream create, with why; forgotten once the topic
    /// is written to.
    denied_topics: BTreeMap<String, String>,
    /// A denial that concerns the whole cluster (no topic), such as an idempotent producer
    /// without IDEMPOTENT_WRITE: nothing can be written until it is lifted.
    cluster_denied: Option<String>,
}

/// The latest client failure of one set of clients (the producers and the admin client of a
/// sink), shared with their librdkafka contexts.
pub struct ClientHealth {
    state: Mutex<State>,
    metrics: Option<Arc<Metrics>>,
}

impl ClientHealth {
    pub(crate) fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            metrics,
        }
    }

    /// librdkafka's error callback: counts, logs (rate-limited) and keeps the failure.
    pub(crate) fn reported(&self, error: &KafkaError, reason: &str) -> Option<ClientErrorKind> {
        let code = error.rdkafka_error_code()?;
        let kind = kind_of(code, reason)?;
        let failure = ClientFailure {
            kind,
            detail: reason.to_string(),
        };
        let mut state = self.state.lock();
        // The transport failures that follow a refused password or handshake ("all brokers
        // down") are its consequence: counted, not logged again. A connection failing of its
        // own (refused, reset) is the news: it replaces what was known.
        let consequence = kind == ClientErrorKind::Transport
            && state.refused.is_some()
            && consequence_only(reason);
        KafkaClientError {
            kind,
            detail: &failure,
            log: !consequence,
        }
        .emit_to(self.metrics.as_deref());
        match kind {
            ClientErrorKind::Authorization => state.cluster_denied = Some(failure.to_string()),
            ClientErrorKind::Transport => {
                if !consequence {
                    state.refused = None;
                }
                state.transport = Some(failure);
            }
            ClientErrorKind::Authentication | ClientErrorKind::Tls => state.refused = Some(failure),
        }
        Some(kind)
    }

    /// A topic could not be created: the service account may not (`detail` says so, naming the
    /// topic). Counted and kept for readiness until the topic is written to.
    pub(crate) fn topic_denied(&self, topic: &str, detail: &str) {
        KafkaClientError {
            kind: ClientErrorKind::Authorization,
            detail: &detail,
            log: true,
        }
        .emit_to(self.metrics.as_deref());
        let mut state = self.state.lock();
        if state.denied_topics.len() < MAX_DENIED_TOPICS || state.denied_topics.contains_key(topic)
        {
            state
                .denied_topics
                .insert(topic.to_string(), detail.to_string());
        }
    }

    /// A write was refused for a reason that names no topic (the cluster, an idempotent
    /// producer without IDEMPOTENT_WRITE).
    pub(crate) fn cluster_denied_now(&self, detail: &str) {
        let detail = format!("{}: {detail}", ClientErrorKind::Authorization.heading());
        KafkaClientError {
            kind: ClientErrorKind::Authorization,
            detail: &detail,
            log: true,
        }
        .emit_to(self.metrics.as_deref());
        self.state.lock().cluster_denied = Some(detail);
    }

    /// `topic` was written to: whatever was denied about it is lifted.
    pub(crate) fn topic_written(&self, topic: &str) {
        let mut state = self.state.lock();
        if !state.denied_topics.is_empty() {
            state.denied_topics.remove(topic);
        }
        state.cluster_denied = None;
        state.refused = None;
        state.transport = None;
    }

    /// A metadata request was answered (`true`) or not.
    pub(crate) fn probed(&self, answered: bool) {
        let mut state = self.state.lock();
        state.probe_answered = answered;
        if answered {
            state.refused = None;
            state.transport = None;
        }
    }

    /// What went wrong since the cluster last answered: an authentication or TLS failure
    /// first (it causes the transport failures that follow), else the latest transport failure.
    pub fn latest(&self) -> Option<ClientFailure> {
        let state = self.state.lock();
        state.refused.clone().or_else(|| state.transport.clone())
    }

    /// An authentication or TLS failure hookstream knows of and the cluster has not answered
    /// since, nor the latest metadata request: no write can succeed until it is fixed, so none
    /// waits out `kafka.ack_timeout` to learn it.
    pub fn blocking(&self) -> Option<ClientFailure> {
        let state = self.state.lock();
        if state.probe_answered {
            return None;
        }
        state.refused.clone()
    }

    /// A denial that stops every write (one that names no topic), while it lasts.
    pub fn cluster_denied(&self) -> Option<String> {
        self.state.lock().cluster_denied.clone()
    }

    /// Topics the cluster would not let hookstream create, each with why.
    pub fn denied_topics(&self) -> Vec<String> {
        self.state.lock().denied_topics.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::Global(code)
    }

    #[test]
    fn each_connection_error_is_told_apart_by_what_must_be_fixed() {
        use ClientErrorKind as K;
        use RDKafkaErrorCode as C;
        assert_eq!(
            kind_of(
                C::Authentication,
                "SASL SCRAM authentication failed: broker responded with invalid-proof"
            ),
            Some(K::Authentication)
        );
        assert_eq!(
            kind_of(C::SSL, "SSL handshake failed: certificate verify failed"),
            Some(K::Tls)
        );
        assert_eq!(
            kind_of(
                C::BrokerTransportFailure,
                "SSL transport error: tlsv13 alert certificate required"
            ),
            Some(K::Tls)
        );
        assert_eq!(
            kind_of(
                C::BrokerTransportFailure,
                "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
            ),
            Some(K::Transport)
        );
        assert_eq!(
            kind_of(C::ClusterAuthorizationFailed, ""),
            Some(K::Authorization)
        );
        assert_eq!(kind_of(C::MessageTimedOut, ""), None);
        assert_eq!(
            kind_of(
                C::Authentication,
                "SASL SCRAM-SHA-512 mechanism handshake failed: Local: Timed out in queue"
            ),
            Some(K::Transport),
            "a frozen broker is not a refused password"
        );
    }

    #[test]
    fn an_authentication_failure_blocks_writes_until_the_cluster_answers() {
        let health = ClientHealth::new(None);
        assert_eq!(health.blocking(), None);
        health.reported(&error(RDKafkaErrorCode::Authentication), "invalid-proof");
        let failure = health.blocking().expect("known to fail");
        assert_eq!(
            failure.to_string(),
            "kafka authentication failed: invalid-proof"
        );
        health.probed(true);
        assert_eq!(health.blocking(), None, "the cluster answered");
        health.probed(false);
        assert_eq!(health.blocking(), None, "no failure reported since");
    }

    #[test]
    fn the_transport_failures_that_follow_a_refused_password_do_not_hide_it() {
        let health = ClientHealth::new(None);
        health.reported(&error(RDKafkaErrorCode::Authentication), "invalid-proof");
        health.reported(
            &error(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(
            health.latest().map(|f| f.kind),
            Some(ClientErrorKind::Authentication)
        );
        assert!(health.blocking().is_some());
    }

    #[test]
    fn a_connection_refused_after_a_refused_password_is_what_is_named_then() {
        let health = ClientHealth::new(None);
        health.reported(&error(RDKafkaErrorCode::Authentication), "invalid-proof");
        health.reported(
            &error(RDKafkaErrorCode::BrokerTransportFailure),
            "Connect to ipv4#127.0.0.1:9093 failed: Connection refused",
        );
        assert_eq!(health.blocking(), None);
        assert_eq!(
            health.latest().map(|f| f.kind),
            Some(ClientErrorKind::Transport)
        );
    }

    #[test]
    fn a_transport_failure_is_named_but_blocks_nothing() {
        let health = ClientHealth::new(None);
        health.reported(&error(RDKafkaErrorCode::BrokerTransportFailure), "refused");
        assert_eq!(health.blocking(), None);
        assert_eq!(
            health.latest().map(|f| f.kind),
            Some(ClientErrorKind::Transport)
        );
    }

    #[test]
    fn a_denied_topic_is_remembered_until_it_is_written_to_and_the_list_is_bounded() {
        let health = ClientHealth::new(None);
        for n in 0..100 {
            health.topic_denied(&format!("webhooks.x.e{n}"), "no CREATE");
        }
        assert_eq!(health.denied_topics().len(), MAX_DENIED_TOPICS);
        health.topic_written("webhooks.x.e0");
        assert_eq!(health.denied_topics().len(), MAX_DENIED_TOPICS - 1);
        assert_eq!(health.denied_topics()[0], "no CREATE");
    }
}
