//! The pieces every scenario uses: the real hookstream binary as a child process, signed load
//! with every outcome recorded, and the check against what Kafka holds.

use crate::support::{free_port, temp_dir, wait_for_port};
use hookstream::load::{self, Limit, LoadOptions, Report, Target};
use hookstream::providers;
use hookstream::signature::Secret;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "fault-suite-secret";
const BIN: &str = env!("CARGO_BIN_EXE_hookstream");

/// hookstream as a child process, restartable on the same port.
pub struct Hookstream {
    pub port: u16,
    brokers: String,
    pub prefix: String,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Hookstream {
    pub async fn start(brokers: &str, prefix: &str) -> Self {
        let mut h = Hookstream {
            port: free_port(),
            brokers: brokers.to_string(),
            prefix: prefix.to_string(),
            dir: temp_dir(prefix),
            child: None,
            starts: 0,
        };
        h.launch().await;
        h
    }

    async fn launch(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("hookstream-{}.log", self.starts)))
            .expect("log file");
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("HOOKSTREAM__SERVER__HOST", "127.0.0.1")
            .env("HOOKSTREAM__SERVER__PORT", self.port.to_string())
            .env("HOOKSTREAM__SERVER__READINESS_INTERVAL", "1s")
            .env("HOOKSTREAM__KAFKA__BROKERS", &self.brokers)
            .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &self.prefix)
            .env("HOOKSTREAM__PROVIDERS__LIVESESSION__SECRETS", SECRET)
            .env("HOOKSTREAM__LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().expect("hookstream starts"));
        wait_for_port(self.port).await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status();
    }

    /// Waits for the process to end; its exit code (None when killed by a signal).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status.code();
            }
            assert!(Instant::now() < deadline, "hookstream did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.launch().await;
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/livesession", self.port)
    }

    pub fn topic(&self) -> String {
        format!("{}.livesession.js_error", self.prefix)
    }

    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("hookstream-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Hookstream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Open-loop signed load with every outcome recorded.
pub fn load_options(url: &str, id_prefix: &str, rate: f64, duration: Duration) -> LoadOptions {
    LoadOptions {
        target: Target::parse(url).expect("url"),
        provider: providers::find("livesession").expect("provider"),
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
                *copies.entry(id).or_default() += 1;
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    Stored {
        copies,
        high_watermarks: highs.values().sum(),
        complete: next.iter().all(|(p, o)| *o >= highs[p]),
    }
}

/// The ids a report saw answered 200.
pub fn accepted_ids(report: &Report, prefix: &str) -> BTreeSet<String> {
    report
        .outcomes
        .iter()
        .filter(|o| o.status == Some(200))
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
