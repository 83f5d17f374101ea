//! Prometheus metrics, all in one registry under the `hookstream_` namespace.
//!
//! Labels come from small fixed sets: provider names from the registry (or `unknown`), HTTP
//! status codes, error codes ([`crate::codes::ErrorCode`]), produce failure reasons
//! ([`crate::codes::FailureReason`]). `event_name` values are capped at [`MAX_EVENT_NAME_LABELS`]
//! distinct names per process; later names are counted as `other`.
//!
//! Metrics are counted where the outcome they count is logged: see [`crate::internal_events`].

use crate::telemetry::LogBudget;
use parking_lot::Mutex;
use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashSet;

/// Distinct `event_name` label values kept before the rest are reported as `other`.
pub const MAX_EVENT_NAME_LABELS: usize = 50;

const NAMESPACE: &str = "hookstream";

/// Buckets of the latency histograms, in seconds.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub webhooks_accepted: IntCounterVec,
    pub webhooks_duplicates: IntCounterVec,
    pub webhooks_rejected: IntCounterVec,
    pub webhooks_dead_lettered: IntCounterVec,
    pub handshakes: IntCounterVec,
    pub messages_produced: IntCounterVec,
    pub produce_duration: Histogram,
    pub produce_failures: IntCounterVec,
    pub topics_created: IntCounterVec,
    pub topic_overflows: IntCounterVec,
    pub spooled: IntCounterVec,
    pub spool_forwarded: IntCounter,
    pub spool_records: IntGauge,
    pub spool_bytes: IntGauge,
    pub spool_max_bytes: IntGauge,
    pub spool_oldest_age: prometheus::Gauge,
    pub spool_corrupt: IntCounter,
    pub spool_possible_duplicates: IntCounter,
    pub spool_sync_duration: Histogram,
    pub spool_io_errors: IntCounterVec,
    pub spool_parked: IntGauge,
    pub spool_stalled: IntGauge,
    pub spool_unreadable_segments: IntGauge,
    pub spool_dead_lettered: IntCounter,
    pub producer_resets: IntCounter,
    pub open_connections: IntGauge,
    pub requests_in_flight: IntGauge,
    pub dedupe_entries: IntGauge,
    pub dedupe_horizon: prometheus::Gauge,
    pub dedupe_errors: IntCounterVec,
    pub kafka_queue_messages: IntGauge,
    pub kafka_queue_bytes: IntGauge,
    pub kafka_broker_rtt: GaugeVec,
    pub kafka_broker_up: IntGaugeVec,
    pub kafka_broker_tx_errors: IntCounterVec,
    /// What librdkafka reported wrong with the connection, by what must be fixed.
    pub kafka_client_errors: IntCounterVec,
    pub ready: IntGaugeVec,
    /// Configuration reloads while serving, by result (`applied`, `refused`).
    pub config_reloads: IntCounterVec,
    /// Rate limits of the `warn` lines that come with rejections and dead letters.
    pub rejection_log: LogBudget,
    pub dead_letter_log: LogBudget,
    /// At most one warning a minute that the dedupe horizon is short.
    pub dedupe_horizon_log: LogBudget,
    pub dedupe_error_log: LogBudget,
    /// One overflow warning a minute: a sender of free-form event names can send thousands.
    pub topic_overflow_log: LogBudget,
    /// One warning a minute about spooled records the broker refuses: a whole spool of them
    /// is retried in turn.
    pub spool_refused_log: LogBudget,
    /// One line per kind of Kafka client failure each 10 s: librdkafka reports every failed
    /// reconnection, as often as every 100 ms.
    pub kafka_client_error_log: LogBudget,
    /// One warning a minute per spool I/O operation that fails (a read, an append, a mark):
    /// a failing disk fails every one of them.
    pub spool_io_log: LogBudget,
    event_names: Mutex<HashSet<String>>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

/// Creates each metric and registers it in one call.
struct Register<'a>(&'a Registry);

type Made<M> = Result<M, prometheus::Error>;

impl Register<'_> {
    fn add<M: Collector + Clone + 'static>(&self, metric: M) -> Made<M> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn counter(&self, name: &str, help: &str) -> Made<IntCounter> {
        self.add(IntCounter::with_opts(opts(name, help))?)
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> Made<IntCounterVec> {
        self.add(IntCounterVec::new(opts(name, help), labels)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Made<IntGauge> {
        self.add(IntGauge::with_opts(opts(name, help))?)
    }

    fn float_gauge(&self, name: &str, help: &str) -> Made<prometheus::Gauge> {
        self.add(prometheus::Gauge::with_opts(opts(name, help))?)
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Made<IntGaugeVec> {
        self.add(IntGaugeVec::new(opts(name, help), labels)?)
    }

    fn float_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Made<GaugeVec> {
        self.add(GaugeVec::new(opts(name, help), labels)?)
    }

    fn histogram(&self, name: &str, help: &str) -> Made<Histogram> {
        let opts = HistogramOpts::from(opts(name, help)).buckets(LATENCY_BUCKETS.to_vec());
        self.add(Histogram::with_opts(opts)?)
    }

    fn histogram_vec(&self, name: &str, help: &str, labels: &[&str]) -> Made<HistogramVec> {
        let opts = HistogramOpts::from(opts(name, help)).buckets(LATENCY_BUCKETS.to_vec());
        self.add(HistogramVec::new(opts, labels)?)
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let r = Register(&registry);
        let build_info = r.gauge_vec(
            "build_info",
            "Always 1; the version label says which hookstream is running.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::new(
                std::process::id() as i32,
                NAMESPACE,
            ),
        ))?;
        Ok(Metrics {
            http_requests: r.counter_vec("http_requests_total", "HTTP requests answered, by provider and status code.", &["provider", "status"])?,
            http_request_duration: r.histogram_vec("http_request_duration_seconds", "Time from request start to response, by provider.", &["provider"])?,
            webhooks_accepted: r.counter_vec("webhooks_accepted_total", "Webhooks written to Kafka and acknowledged.", &["provider"])?,
            webhooks_duplicates: r.counter_vec("webhooks_duplicates_total", "Redeliveries answered as duplicates (nothing produced).", &["provider"])?,
            webhooks_rejected: r.counter_vec("webhooks_rejected_total", "Webhooks answered with an error, by reason (the error code).", &["provider", "reason"])?,
            webhooks_dead_lettered: r.counter_vec("webhooks_dead_lettered_total", "Verified webhooks that could not be normalized, kept in the dead-letter topic, by error code.", &["provider", "reason"])?,
            handshakes: r.counter_vec("handshakes_total", "URL-verification handshakes and signed pings answered (nothing produced).", &["provider"])?,
            messages_produced: r.counter_vec("kafka_messages_produced_total", "Messages acknowledged by the broker.", &["provider", "event_name"])?,
            produce_duration: r.histogram("kafka_produce_duration_seconds", "Time from enqueueing a message to the broker's acknowledgement.")?,
            produce_failures: r.counter_vec("kafka_produce_failures_total", "Writes that were not acknowledged, by reason.", &["provider", "reason"])?,
            topics_created: r.counter_vec("kafka_topics_created_total", "Topics created through the Admin API.", &["provider"])?,
            spooled: r.counter_vec("spooled_total", "Webhooks answered 202 spooled: on local disk, fsynced, on their way to Kafka.", &["provider"])?,
            spool_forwarded: r.counter("spool_forwarded_total", "Spooled records written to Kafka and acknowledged.")?,
            spool_records: r.gauge("spool_records", "Records in the spool, not yet acknowledged by Kafka.")?,
            spool_bytes: r.gauge("spool_bytes", "Bytes of the spooled records not yet acknowledged by Kafka (bounded by spool.max_bytes; space of forwarded records in a segment that still holds others is not counted).")?,
            spool_max_bytes: r.gauge("spool_max_bytes", "spool.max_bytes: the most the spool may hold (0 when the spool is disabled).")?,
            spool_oldest_age: r.float_gauge("spool_oldest_age_seconds", "Age of the oldest record in the spool (0 when empty).")?,
            spool_corrupt: r.counter("spool_corrupt_records_total", "Damaged records found in spool files (kept aside under corrupt/, never forwarded).")?,
            spool_possible_duplicates: r.counter("spool_possible_duplicates_total", "Spooled records forwarded after a restart whose first write's outcome was unknown: possibly a second copy.")?,
            spool_io_errors: r.counter_vec("spool_io_errors_total", "Spool operations that failed with an I/O error (never taken for damage: retried). operation: append, read, mark, probe.", &["operation"])?,
            spool_parked: r.gauge("spool_parked_records", "Spooled records the broker refuses for good and that could not be dead-lettered either (or whose provider is disabled): kept, tried again later. Alert on it.")?,
            spool_stalled: r.gauge("spool_stalled", "1 while the spool holds records and the forwarder has made no progress for a while although the broker answers metadata.")?,
            spool_unreadable_segments: r.gauge("spool_unreadable_segments", "Spool segment files that could not be read at startup (an I/O error, not damage): kept and read again every second.")?,
            spool_dead_lettered: r.counter("spool_dead_lettered_total", "Spooled records the broker refused for good, written to the dead-letter topic instead.")?,
            spool_sync_duration: r.histogram("spool_sync_duration_seconds", "Time of one spool append batch's write and fdatasync (group commit).")?,
            topic_overflows: r.counter_vec("kafka_topic_overflow_total", "Events written to their provider's overflow topic ({prefix}.{provider}.OVERFLOW) because it had kafka.max_topics_per_provider topics.", &["provider"])?,
            producer_resets: r.counter("kafka_producer_resets_total", "Times the producer was replaced with a fresh instance (a write timed out, or the producer became unusable).")?,
            open_connections: r.gauge("http_connections", "Open HTTP connections (bounded by server.max_connections).")?,
            requests_in_flight: r.gauge("http_requests_in_flight", "Webhook requests being processed (bounded by server.max_in_flight).")?,
            dedupe_entries: r.gauge("dedupe_cache_entries", "Event ids currently remembered for deduplication.")?,
            dedupe_errors: r.counter_vec("dedupe_errors_total", "Calls to the shared deduplication store (Redis) that failed or timed out, by operation (claim, commit, release).", &["operation"])?,
            dedupe_horizon: r.float_gauge("dedupe_horizon_seconds", "How far back deduplication remembers: dedupe.window, or once dedupe.max_entries ids fill the cache, the age of the oldest id.")?,
            kafka_queue_messages: r.gauge("kafka_producer_queue_messages", "Messages waiting in the producer queue (librdkafka msg_cnt).")?,
            kafka_queue_bytes: r.gauge("kafka_producer_queue_bytes", "Bytes waiting in the producer queue (librdkafka msg_size).")?,
            kafka_broker_rtt: r.float_gauge_vec("kafka_broker_rtt_seconds", "Average broker round-trip time over the last statistics interval.", &["broker"])?,
            kafka_broker_up: r.gauge_vec("kafka_broker_up", "1 when librdkafka's connection to the broker is UP.", &["broker"])?,
            kafka_broker_tx_errors: r.counter_vec("kafka_broker_transmit_errors_total", "Transmission errors to the broker (librdkafka txerrs).", &["broker"])?,
            kafka_client_errors: r.counter_vec("kafka_client_errors_total", "Failures librdkafka reported between hookstream and the cluster, by kind: authentication (credentials refused), authorization (an operation denied), tls (handshake failed), transport (connection refused, lost or unresolved).", &["kind"])?,
            ready: r.gauge_vec("dependency_up", "1 while the dependency answered its last readiness check (what /readyz reports).", &["dependency"])?,
            config_reloads: r.counter_vec("config_reloads_total", "Configuration reloads while serving (SIGHUP, or a changed file with serve --watch-config), by result: applied, or refused (invalid; the configuration in use stays).", &["result"])?,
            rejection_log: LogBudget::default(),
            dead_letter_log: LogBudget::default(),
            dedupe_horizon_log: LogBudget::new(1, std::time::Duration::from_secs(60)),
            dedupe_error_log: LogBudget::default(),
            topic_overflow_log: LogBudget::new(1, std::time::Duration::from_secs(60)),
            spool_refused_log: LogBudget::new(1, std::time::Duration::from_secs(60)),
            kafka_client_error_log: LogBudget::new(1, std::time::Duration::from_secs(10)),
            spool_io_log: LogBudget::new(1, std::time::Duration::from_secs(60)),
            event_names: Mutex::new(HashSet::new()),
            registry,
        })
    }

    /// Creates every series whose label values are known up front at zero, so dashboards and
    /// alerts see a flat line rather than no data before the first occurrence.
    pub fn initialize(
        &self,
        providers: &[&str],
        rejection_codes: &[&str],
        failure_reasons: &[&str],
    ) {
        for kind in <crate::codes::ClientErrorKind as strum::IntoEnumIterator>::iter() {
            self.kafka_client_errors.with_label_values(&[kind.label()]);
        }
        for operation in ["claim", "commit", "release"] {
            self.dedupe_errors.with_label_values(&[operation]);
        }
        for result in ["applied", "refused"] {
            self.config_reloads.with_label_values(&[result]);
        }
        self.initialize_providers(providers, rejection_codes, failure_reasons);
    }

    /// Creates the series of `providers` at zero (those of a provider a reload adds too).
    pub fn initialize_providers(
        &self,
        providers: &[&str],
        rejection_codes: &[&str],
        failure_reasons: &[&str],
    ) {
        for provider in providers {
            self.webhooks_accepted.with_label_values(&[provider]);
            self.webhooks_duplicates.with_label_values(&[provider]);
            self.spooled.with_label_values(&[provider]);
            self.topic_overflows.with_label_values(&[provider]);
            self.http_request_duration.with_label_values(&[provider]);
            for code in rejection_codes {
                self.webhooks_rejected.with_label_values(&[provider, code]);
            }
            for reason in crate::codes::DEAD_LETTER_REASONS {
                self.webhooks_dead_lettered
                    .with_label_values(&[provider, reason.as_str()]);
            }
            for reason in failure_reasons {
                self.produce_failures.with_label_values(&[provider, reason]);
            }
        }
    }

    /// The `event_name` label value: the name itself for the first [`MAX_EVENT_NAME_LABELS`]
    /// distinct names, `other` after that.
    pub fn event_name_label<'a>(&self, event_name: &'a str) -> &'a str {
        let mut seen = self.event_names.lock();
        if seen.contains(event_name) {
            return event_name;
        }
        if seen.len() < MAX_EVENT_NAME_LABELS {
            seen.insert(event_name.to_string());
            return event_name;
        }
        "other"
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_name_labels_are_capped() {
        let m = Metrics::new().expect("metrics");
        for i in 0..MAX_EVENT_NAME_LABELS {
            let name = format!("e{i}");
            assert_eq!(m.event_name_label(&name), name);
        }
        assert_eq!(m.event_name_label("one_too_many"), "other");
        assert_eq!(m.event_name_label("e0"), "e0");
    }

    #[test]
    fn render_includes_build_info_and_namespace() {
        let m = Metrics::new().expect("metrics");
        m.webhooks_accepted
            .with_label_values(&["livesession"])
            .inc();
        let text = m.render().expect("render");
        assert!(text.contains("hookstream_build_info{version=\""));
        assert!(text.contains("hookstream_webhooks_accepted_total{provider=\"livesession\"} 1"));
    }
}
