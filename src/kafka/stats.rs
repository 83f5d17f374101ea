//! librdkafka statistics and logs routed into metrics and `tracing`.

use crate::metrics::Metrics;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::Statistics;
use std::sync::Arc;

/// Client context: statistics → gauges, librdkafka logs → `tracing`.
pub struct StatsContext {
    /// `None` for the admin client, whose statistics would double-count the queue.
    metrics: Option<Arc<Metrics>>,
}

impl StatsContext {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics: Some(metrics),
        }
    }

    pub fn admin() -> Self {
        Self { metrics: None }
    }
}

impl ClientContext for StatsContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
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

    fn stats(&self, stats: Statistics) {
        let Some(m) = &self.metrics else { return };
        m.kafka_queue_messages.set(clamp(stats.msg_cnt));
        m.kafka_queue_bytes.set(clamp(stats.msg_size));
        for broker in stats.brokers.values() {
            // Bootstrap placeholders (nodeid -1) are replaced by real brokers once known.
            if broker.nodeid < 0 {
                continue;
            }
            let label = broker.nodename.as_str();
            m.kafka_broker_up
                .with_label_values(&[label])
                .set(i64::from(broker.state == "UP"));
            // librdkafka reports a running total; the counter follows it.
            let tx_errors = m.kafka_broker_tx_errors.with_label_values(&[label]);
            let seen = tx_errors.get();
            if broker.txerrs > seen {
                tx_errors.inc_by(broker.txerrs - seen);
            }
            if let Some(rtt) = &broker.rtt {
                m.kafka_broker_rtt
                    .with_label_values(&[label])
                    .set(rtt.avg as f64 / 1_000_000.0);
            }
        }
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
