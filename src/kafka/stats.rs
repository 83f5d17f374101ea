//! librdkafka statistics and logs routed into metrics and `tracing`.

use super::client_errors::ClientHealth;
use crate::internal_events::{BrokerStatistics, InternalEvent, KafkaStatisticsReceived};
use crate::metrics::Metrics;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::Statistics;
use std::sync::Arc;
use std::time::Duration;

/// Client context: statistics → gauges, librdkafka logs → `tracing`, connection failures →
/// [`ClientHealth`].
pub struct StatsContext {
    /// `None` for the admin client, whose statistics would double-count the queue.
    metrics: Option<Arc<Metrics>>,
    /// Shared by every client of one sink, so that what one learns (a refused password) the
    /// others answer with.
    client: Arc<ClientHealth>,
}

impl StatsContext {
    pub fn new(metrics: Arc<Metrics>, client: Arc<ClientHealth>) -> Self {
        Self {
            metrics: Some(metrics),
            client,
        }
    }

    pub fn admin(client: Arc<ClientHealth>) -> Self {
        Self {
            metrics: None,
            client,
        }
    }
}

impl ClientContext for StatsContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // A broker connection failing ("FAIL") is reported to [`ClientContext::error`] too,
        // which counts it, names its kind and logs it rate-limited: librdkafka writes it again at
        // every reconnection attempt.
        if fac == "FAIL" {
            tracing::debug!(target: "librdkafka", fac, "{message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    /// librdkafka's global errors: a connection error is kept, counted and logged (rate-limited)
    /// by [`ClientHealth`]; anything else is logged as librdkafka's own lines are.
    fn error(&self, error: KafkaError, reason: &str) {
        if self.client.reported(&error, reason).is_none() {
            tracing::error!(target: "librdkafka", %error, "{reason}");
        }
    }

    fn stats(&self, stats: Statistics) {
        let Some(m) = &self.metrics else { return };
        KafkaStatisticsReceived {
            queue_messages: stats.msg_cnt,
            queue_bytes: stats.msg_size,
            brokers: stats
                .brokers
                .values()
                // Bootstrap placeholders (nodeid -1) are replaced by real brokers once known.
                .filter(|broker| broker.nodeid >= 0)
                .map(|broker| BrokerStatistics {
                    name: &broker.nodename,
                    up: broker.state == "UP",
                    tx_errors: broker.txerrs,
                    rtt: broker
                        .rtt
                        .as_ref()
                        .map(|rtt| Duration::from_micros(u64::try_from(rtt.avg).unwrap_or(0))),
                })
                .collect(),
        }
        .emit(m);
    }
}
