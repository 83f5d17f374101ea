//! The pieces every scenario uses: the real hookstream binary as a child process, signed load
//! with every outcome recorded, and the check against what Kafka holds.

pub use crate::support::process::Hookstream;
use hookstream::load::{self, Limit, LoadOptions, Report, Target};
use hookstream::providers;
use hookstream::signature::Secret;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

pub use crate::support::SECRET;

/// Open-loop signed load with every outcome recorded.
pub fn load_options(url: &str, id_prefix: &str, rate: f64, duration: Duration) -> LoadOptions {
    LoadOptions {
        target: Target::parse(url).expect("url"),
        provider: providers::built_in("livesession").expect("provider"),
        sign_as: None,
        secret: Secret::new(SECRET),
        connections: 32,
        limit: Limit::Duration(duration),
        rate: Some(rate),
        warmup: Duration::ZERO,
        wrong_signature: false,
        timeout: Duration::from_secs(15),
        id_prefix: id_prefix.to_string(),
        record_outcomes: true,
        progress: false,
        tls: None,
    }
}

pub async fn run_load(options: LoadOptions) -> Report {
    load::run(options).await.expect("load runs")
}

/// The burst after a fault: closed loop, every request must be answered 200.
pub async fn burst(url: &str, id_prefix: &str, requests: u64) -> Report {
    let mut options = load_options(url, id_prefix, 1.0, Duration::ZERO);
    options.rate = None;
    options.limit = Limit::Requests(requests);
    options.record_outcomes = true;
    run_load(options).await
}

/// `n` requests one after another (ids `sentinel-…`).
pub async fn sentinel_writes(url: &str, n: u64) -> Report {
    let mut options = load_options(url, "sentinel", 1.0, Duration::ZERO);
    options.rate = None;
    options.connections = 1;
    options.limit = Limit::Requests(n);
    run_load(options).await
}

/// What Kafka holds for a topic.
pub struct Stored {
    /// Event id → copies.
    pub copies: HashMap<String, u32>,
    /// Event id → when each copy was produced (its timestamp, epoch milliseconds), in offset
    /// order within a partition.
    pub produced_at: HashMap<String, Vec<i64>>,
    /// Sum of the partitions' high watermarks: how many records the topic holds.
    pub high_watermarks: i64,
    /// Every offset up to the high watermarks was read.
    pub complete: bool,
}

impl Stored {
    pub fn duplicates(&self) -> u32 {
        self.copies.values().map(|n| n - 1).sum()
    }
}

/// Reads every record of `topic` up to its high watermarks (giving up on an offset range the
/// broker does not serve within `patience`).
pub fn read_topic(brokers: &str, topic: &str, patience: Duration) -> Stored {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hookstream-faults")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    let mut highs = HashMap::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .expect("watermarks");
        highs.insert(partition.id(), high);
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut copies: HashMap<String, u32> = HashMap::new();
    let mut produced_at: HashMap<String, Vec<i64>> = HashMap::new();
    let mut next: HashMap<i32, i64> = highs.keys().map(|p| (*p, 0)).collect();
    let mut last_progress = Instant::now();
    while next.iter().any(|(p, o)| *o < highs[p]) && last_progress.elapsed() < patience {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                next.insert(m.partition(), m.offset() + 1);
                let id = m
                    .headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|h| h.key == "hookstream-event-id")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .unwrap_or_default();
                if let Some(at) = m.timestamp().to_millis() {
                    produced_at.entry(id.clone()).or_default().push(at);
                }
                *copies.entry(id).or_default() += 1;
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    Stored {
        copies,
        produced_at,
        high_watermarks: highs.values().sum(),
        complete: next.iter().all(|(p, o)| *o >= highs[p]),
    }
}

/// The ids a report saw answered 2xx (200 accepted, or 202 spooled when the spool is on).
pub fn accepted_ids(report: &Report, prefix: &str) -> BTreeSet<String> {
    accepted_ids_sent_from(report, prefix, Duration::ZERO)
}

/// The ids a report saw answered 202 (spooled), and those it saw answered 200 among the ones
/// sent `accepted_from` the load's start on.
pub fn accepted_ids_sent_from(
    report: &Report,
    prefix: &str,
    accepted_from: Duration,
) -> BTreeSet<String> {
    report
        .outcomes
        .iter()
        .filter(|o| match o.status {
            Some(200) => o.sent_at >= accepted_from,
            Some(202) => true,
            _ => false,
        })
        .map(|o| load::event_id(prefix, o.seq))
        .collect()
}

/// How long after `from` the answers settled into an unbroken run of 200s (until `until`): the
/// due time of the last non-200 request in that window, minus `from`. Zero if there was none.
pub fn recovery_after(report: &Report, from: Duration, until: Duration) -> Duration {
    report
        .outcomes
        .iter()
        .filter(|o| o.sent_at >= from && o.sent_at < until && o.status != Some(200))
        .map(|o| o.sent_at - from)
        .max()
        .unwrap_or(Duration::ZERO)
}

/// `200: n, 503: m, io: k` for a report.
pub fn statuses(report: &Report) -> String {
    let mut parts: Vec<String> = report
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    if report.io_errors > 0 {
        parts.push(format!("io: {}", report.io_errors));
    }
    parts.join(", ")
}
