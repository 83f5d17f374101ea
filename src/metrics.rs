//! Prometheus metrics, all in one registry under the `hookstream_` namespace.
//!
//! Labels come from small fixed sets: provider names from the registry (or `unknown`), HTTP
//! status codes, error codes ([`crate::codes::ErrorCode`]), produce failure reasons
//! ([`crate::codes::FailureReason`]). `event_name` values are capped at [`MAX_EVENT_NAME_LABELS`]
//! distinct names per process; later names are counted as `other`.
//!
//! Metrics are counted where the outcome they count is logged: see [`crate::internal_events`].

use crate::telemetry::{LogBudget, LogLimit};
use parking_lot::Mutex;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashSet;

/// Distinct `event_name` label values kept before the rest are reported as `other`.
pub const MAX_EVENT_NAME_LABELS: usize = 50;

const NAMESPACE: &str = "hookstream";

/// Buckets of the latency histograms, in seconds.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric hookstream exports, grouped by the area whose events write them (see
/// [`crate::internal_events`]: only events write; the rest of the crate reads, in tests).
pub struct Metrics {
    registry: Registry,
    pub(crate) http: HttpMetrics,
    pub(crate) webhooks: WebhookMetrics,
    pub(crate) kafka: KafkaMetrics,
    pub(crate) spool: SpoolMetrics,
    pub(crate) dedupe: DedupeMetrics,
    pub(crate) health: HealthMetrics,
    pub(crate) config: ConfigMetrics,
    /// Rate limits of the log lines events write; each event states its own limit.
    logs: LogBudget,
    event_names: Mutex<HashSet<String>>,
}

/// The public port's requests and connections.
pub(crate) struct HttpMetrics {
    pub(crate) requests: IntCounterVec,
    pub(crate) request_duration: HistogramVec,
    pub(crate) open_connections: IntGauge,
    pub(crate) requests_in_flight: IntGauge,
}

/// What became of each webhook.
pub(crate) struct WebhookMetrics {
    pub(crate) accepted: IntCounterVec,
    pub(crate) duplicates: IntCounterVec,
    pub(crate) rejected: IntCounterVec,
    pub(crate) dead_lettered: IntCounterVec,
    pub(crate) handshakes: IntCounterVec,
}

/// Writes, topics, producers, and what librdkafka reports about the cluster.
pub(crate) struct KafkaMetrics {
    pub(crate) messages_produced: IntCounterVec,
    pub(crate) produce_duration: Histogram,
    pub(crate) produce_failures: IntCounterVec,
    pub(crate) topics_created: IntCounterVec,
    pub(crate) topic_overflows: IntCounterVec,
    pub(crate) producer_resets: IntCounter,
    pub(crate) queue_messages: IntGauge,
    pub(crate) queue_bytes: IntGauge,
    pub(crate) broker_rtt: GaugeVec,
    pub(crate) broker_up: IntGaugeVec,
    pub(crate) broker_tx_errors: IntCounterVec,
    /// What librdkafka reported wrong with the connection, by what must be fixed.
    pub(crate) client_errors: IntCounterVec,
}

/// The durable spool: what entered, what left, what it holds, how its disk behaves.
pub(crate) struct SpoolMetrics {
    pub(crate) spooled: IntCounterVec,
    pub(crate) forwarded: IntCounter,
    pub(crate) records: IntGauge,
    pub(crate) bytes: IntGauge,
    pub(crate) max_bytes: IntGauge,
    pub(crate) oldest_age: Gauge,
    pub(crate) corrupt: IntCounter,
    pub(crate) possible_duplicates: IntCounter,
    pub(crate) sync_duration: Histogram,
    pub(crate) io_errors: IntCounterVec,
    pub(crate) parked: IntGauge,
    pub(crate) stalled: IntGauge,
    pub(crate) unreadable_segments: IntGauge,
    pub(crate) dead_lettered: IntCounter,
}

/// The deduplication cache and the shared store.
pub(crate) struct DedupeMetrics {
    pub(crate) entries: IntGauge,
    pub(crate) horizon: Gauge,
    pub(crate) errors: IntCounterVec,
}

/// What `/readyz` reports, per dependency.
pub(crate) struct HealthMetrics {
    pub(crate) dependency_up: IntGaugeVec,
}

/// Configuration reloads while serving.
pub(crate) struct ConfigMetrics {
    /// By result (`applied`, `refused`).
    pub(crate) reloads: IntCounterVec,
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

    fn float_gauge(&self, name: &str, help: &str) -> Made<Gauge> {
        self.add(Gauge::with_opts(opts(name, help))?)
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

impl HttpMetrics {
    #[rustfmt::skip]
    fn register(r: &Register) -> Made<Self> {
        Ok(Self {
            requests: r.counter_vec("http_requests_total", "HTTP requests answered, by provider and status code.", &["provider", "status"])?,
            request_duration: r.histogram_vec("http_request_duration_seconds", "Time from request start to response, by provider.", &["provider"])?,
            open_connections: r.gauge("http_connections", "Open HTTP connections (bounded by server.max_connections).")?,
            requests_in_flight: r.gauge("http_requests_in_flight", "Webhook requests being processed (bounded by server.max_in_flight).")?,
        })
    }
}

impl WebhookMetrics {
    #[rustfmt::skip]
    fn register(r: &Register) -> Made<Self> {
        Ok(Self {
            accepted: r.counter_vec("webhooks_accepted_total", "Webhooks written to Kafka and acknowledged.", &["provider"])?,
            duplicates: r.counter_vec("webhooks_duplicates_total", "Redeliveries answered as duplicates (nothing produced).", &["provider"])?,
            rejected: r.counter_vec("webhooks_rejected_total", "Webhooks answered with an error, by reason (the error code).", &["provider", "reason"])?,
            dead_lettered: r.counter_vec("webhooks_dead_lettered_total", "Verified webhooks that could not be normalized, kept in the dead-letter topic, by error code.", &["provider", "reason"])?,
            handshakes: r.counter_vec("handshakes_total", "URL-verification handshakes and signed pings answered (nothing produced).", &["provider"])?,
        })
    }
}

impl KafkaMetrics {
    #[rustfmt::skip]
    fn register(r: &Register) -> Made<Self> {
        Ok(Self {
            messages_produced: r.counter_vec("kafka_messages_produced_total", "Messages acknowledged by the broker.", &["provider", "event_name"])?,
            produce_duration: r.histogram("kafka_produce_duration_seconds", "Time from enqueueing a message to the broker's acknowledgement.")?,
            produce_failures: r.counter_vec("kafka_produce_failures_total", "Writes that were not acknowledged, by reason.", &["provider", "reason"])?,
            topics_created: r.counter_vec("kafka_topics_created_total", "Topics created through the Admin API.", &["provider"])?,
            topic_overflows: r.counter_vec("kafka_topic_overflow_total", "Events written to their provider's overflow topic ({prefix}.{provider}.OVERFLOW) because it had kafka.max_topics_per_provider topics.", &["provider"])?,
            producer_resets: r.counter("kafka_producer_resets_total", "Times the producer was replaced with a fresh instance (a write timed out, or the producer became unusable).")?,
            queue_messages: r.gauge("kafka_producer_queue_messages", "Messages waiting in the producer queue (librdkafka msg_cnt).")?,
            queue_bytes: r.gauge("kafka_producer_queue_bytes", "Bytes waiting in the producer queue (librdkafka msg_size).")?,
            broker_rtt: r.float_gauge_vec("kafka_broker_rtt_seconds", "Average broker round-trip time over the last statistics interval.", &["broker"])?,
            broker_up: r.gauge_vec("kafka_broker_up", "1 when librdkafka's connection to the broker is UP.", &["broker"])?,
            broker_tx_errors: r.counter_vec("kafka_broker_transmit_errors_total", "Transmission errors to the broker (librdkafka txerrs).", &["broker"])?,
            client_errors: r.counter_vec("kafka_client_errors_total", "Failures librdkafka reported between hookstream and the cluster, by kind: authentication (credentials refused), authorization (an operation denied), tls (handshake failed), transport (connection refused, lost or unresolved).", &["kind"])?,
        })
    }
}

impl SpoolMetrics {
    #[rustfmt::skip]
    fn register(r: &Register) -> Made<Self> {
        Ok(Self {
            spooled: r.counter_vec("spooled_total", "Webhooks answered 202 spooled: on local disk, fsynced, on their way to Kafka.", &["provider"])?,
            forwarded: r.counter("spool_forwarded_total", "Spooled records written to Kafka and acknowledged.")?,
            records: r.gauge("spool_records", "Records in the spool, not yet acknowledged by Kafka.")?,
            bytes: r.gauge("spool_bytes", "Bytes of the spooled records not yet acknowledged by Kafka (bounded by spool.max_bytes; space of forwarded records in a segment that still holds others is not counted).")?,
            max_bytes: r.gauge("spool_max_bytes", "spool.max_bytes: the most the spool may hold (0 when the spool is disabled).")?,
            oldest_age: r.float_gauge("spool_oldest_age_seconds", "Age of the oldest record in the spool (0 when empty).")?,
            corrupt: r.counter("spool_corrupt_records_total", "Damaged records found in spool files (kept aside under corrupt/, never forwarded).")?,
            possible_duplicates: r.counter("spool_possible_duplicates_total", "Spooled records forwarded after a restart whose first write's outcome was unknown: possibly a second copy.")?,
            io_errors: r.counter_vec("spool_io_errors_total", "Spool operations that failed with an I/O error (never taken for damage: retried). operation: append, read, mark, probe.", &["operation"])?,
            parked: r.gauge("spool_parked_records", "Spooled records the broker refuses for good and that could not be dead-lettered either (or whose provider is disabled): kept, tried again later. Alert on it.")?,
            stalled: r.gauge("spool_stalled", "1 while the spool holds records and the forwarder has made no progress for a while although the broker answers metadata.")?,
            unreadable_segments: r.gauge("spool_unreadable_segments", "Spool segment files that could not be read at startup (an I/O error, not damage): kept and read again every second.")?,
            dead_lettered: r.counter("spool_dead_lettered_total", "Spooled records the broker refused for good, written to the dead-letter topic instead.")?,
            sync_duration: r.histogram("spool_sync_duration_seconds", "Time of one spool append batch's write and fdatasync (group commit).")?,
        })
    }
}

impl DedupeMetrics {
    #[rustfmt::skip]
    fn register(r: &Register) -> Made<Self> {
        Ok(Self {
            entries: r.gauge("dedupe_cache_entries", "Event ids currently remembered for deduplication.")?,
            errors: r.counter_vec("dedupe_errors_total", "Calls to the shared deduplication store (Redis) that failed or timed out, by operation (claim, commit, release).", &["operation"])?,
            horizon: r.float_gauge("dedupe_horizon_seconds", "How far back deduplication remembers: dedupe.window, or once dedupe.max_entries ids fill the cache, the age of the oldest id.")?,
        })
    }
}

impl HealthMetrics {
    fn register(r: &Register) -> Made<Self> {
        Ok(Self {
            dependency_up: r.gauge_vec(
                "dependency_up",
                "1 while the dependency answered its last readiness check (what /readyz reports).",
                &["dependency"],
            )?,
        })
    }
}

impl ConfigMetrics {
    fn register(r: &Register) -> Made<Self> {
        Ok(Self {
            reloads: r.counter_vec(
                "config_reloads_total",
                "Configuration reloads while serving (SIGHUP, or a changed file with serve --watch-config), by result: applied, or refused (invalid; the configuration in use stays).",
                &["result"],
            )?,
        })
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
            http: HttpMetrics::register(&r)?,
            webhooks: WebhookMetrics::register(&r)?,
            kafka: KafkaMetrics::register(&r)?,
            spool: SpoolMetrics::register(&r)?,
            dedupe: DedupeMetrics::register(&r)?,
            health: HealthMetrics::register(&r)?,
            config: ConfigMetrics::register(&r)?,
            logs: LogBudget::default(),
            event_names: Mutex::new(HashSet::new()),
            registry,
        })
    }

    /// `Some(n)` when a line of `kind` for `key` may be written now within `limit` (`n` lines
    /// were left out since the last one), `None` when this one is left out. Events call it
    /// through `InternalEvent::admit_line`, with their own limit.
    pub(crate) fn admit_line(
        &self,
        limit: LogLimit,
        kind: &'static str,
        key: &'static str,
    ) -> Option<u64> {
        self.logs.admit(limit, kind, key)
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
            self.kafka.client_errors.with_label_values(&[kind.label()]);
        }
        for operation in ["claim", "commit", "release"] {
            self.dedupe.errors.with_label_values(&[operation]);
        }
        for result in ["applied", "refused"] {
            self.config.reloads.with_label_values(&[result]);
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
            self.webhooks.accepted.with_label_values(&[provider]);
            self.webhooks.duplicates.with_label_values(&[provider]);
            self.spool.spooled.with_label_values(&[provider]);
            self.kafka.topic_overflows.with_label_values(&[provider]);
            self.http.request_duration.with_label_values(&[provider]);
            for code in rejection_codes {
                self.webhooks.rejected.with_label_values(&[provider, code]);
            }
            for reason in crate::codes::DEAD_LETTER_REASONS {
                self.webhooks
                    .dead_lettered
                    .with_label_values(&[provider, reason.as_str()]);
            }
            for reason in failure_reasons {
                self.kafka
                    .produce_failures
                    .with_label_values(&[provider, reason]);
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
        m.webhooks
            .accepted
            .with_label_values(&["livesession"])
            .inc();
        let text = m.render().expect("render");
        assert!(text.contains("hookstream_build_info{version=\""));
        assert!(text.contains("hookstream_webhooks_accepted_total{provider=\"livesession\"} 1"));
    }
}
