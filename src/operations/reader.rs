//! Reading a topic from a starting point, up to the end it had when reading began (or on, when
//! following), partition by partition, the way `kcat -C` and `rpk topic consume` do.
//!
//! Length: the one reader behind `tail`, `topics`, `dead-letters list` and `replay` — start
//! offsets (earliest, by time, committed), one deadline that names the broker, the read loop —
//! kept together so that no command reads the cluster its own way.

use crate::configuration::KafkaSettings;
use crate::dead_letter::StoredDeadLetter;
use crate::kafka::consumer_config;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the cluster has to answer for its metadata and offsets, unless told otherwise.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the broker to serve the next record it said it has before giving up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where reading starts, in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every record still in the topic.
    Beginning,
    /// After the consumer group's committed offsets (the beginning where it has none).
    Committed,
    /// After the last record: only what is written from now on.
    End,
    /// At this offset (within what the partition still holds).
    Offset(i64),
    /// The last this many records.
    Last(i64),
    /// The first record written at or after this time (epoch milliseconds); the end where none
    /// was.
    Time(i64),
    /// The first record written at or after this long ago.
    Ago(Duration),
}

impl std::str::FromStr for Start {
    type Err = String;

    /// `beginning`, `end`, an offset, `-N` for the last N records of each partition, a time
    /// (`@2026-12-07T10:00:00Z`, RFC 3339; `@1796637600000`, epoch milliseconds) or a time ago
    /// (`-1h`, `-30m`, `-2d`; `@-1h` too, as rpk writes it).
    fn from_str(text: &str) -> Result<Self, String> {
        const FORMS: &str = "beginning, end, an offset, -N (the last N records), a time (@2026-12-07T10:00:00Z, or @ and epoch milliseconds) or a time ago (-1h, -30m, -2d)";
        match text {
            "beginning" | "start" | "oldest" => return Ok(Start::Beginning),
            "end" | "newest" => return Ok(Start::End),
            _ => {}
        }
        if let Some(time) = text.strip_prefix('@') {
            if let Some(ago) = time.strip_prefix('-') {
                return parse_ago(ago)
                    .map(Start::Ago)
                    .map_err(|e| format!("{text:?}: {e}"));
            }
            if !time.is_empty() && time.bytes().all(|b| b.is_ascii_digit()) {
                return time
                    .parse()
                    .map(Start::Time)
                    .map_err(|e| format!("{text:?}: {e}"));
            }
            return chrono::DateTime::parse_from_rfc3339(time)
                .map(|t| Start::Time(t.timestamp_millis()))
                .map_err(|e| {
                    format!("{text:?} is not a time: write it as RFC 3339, e.g. @2026-12-07T10:00:00Z or @2026-12-07T11:00:00+01:00 ({e})")
                });
        }
        match text.strip_prefix('-') {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                .parse()
                .map(Start::Last)
                .map_err(|_| format!("{text:?} is not {FORMS}")),
            Some(ago) => parse_ago(ago)
                .map(Start::Ago)
                .map_err(|_| format!("{text:?} is not {FORMS}")),
            None => text
                .parse()
                .map(Start::Offset)
                .map_err(|_| format!("{text:?} is not {FORMS}")),
        }
    }
}

/// A time ago, with a unit: `90s`, `30m`, `1h`, `2d`, `1h30m`.
fn parse_ago(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a time ago like 1h, 30m or 2d ({e})"))
}

impl Start {
    /// The epoch milliseconds a time start reads from (`None` for the other starts).
    fn time(self) -> Option<i64> {
        match self {
            Start::Time(ms) => Some(ms),
            Start::Ago(ago) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Some(i64::try_from(now.saturating_sub(ago).as_millis()).unwrap_or(i64::MAX))
            }
            _ => None,
        }
    }
}

/// Why a topic cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("topic {0} does not exist")]
    NoSuchTopic(String),
    #[error("{0}")]
    Kafka(String),
}

/// A reader's consumer context: it keeps librdkafka's latest report of a failed connection
/// (`Connect to … failed: Connection refused`), so that a metadata request that found no
/// broker to answer can say why, instead of librdkafka's `BrokerTransportFailure`. The report
/// is read from librdkafka's log (facility `FAIL`), which the consumer serves when it is polled
/// (see [`Deadline::no_answer`]).
#[derive(Default)]
pub struct Latest {
    error: Mutex<Option<String>>,
}

impl ClientContext for Latest {
    fn log(&self, _: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            // `[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to … failed: …`
            let message = match message.strip_prefix("[thrd:") {
                Some(rest) => rest.split_once("]: ").map_or(message, |(_, said)| said),
                None => message,
            };
            *self.error.lock() = Some(message.to_string());
        }
    }

    /// Not printed: a command says what failed in its own words.
    fn error(&self, _: KafkaError, _: &str) {}
}

impl ConsumerContext for Latest {}

type ReaderConsumer = BaseConsumer<Latest>;

/// The consumer configuration of `group`, logging connection failures to [`Latest`] whatever
/// the process logs at (librdkafka would otherwise log nothing: a command sets up no logger).
fn reader_config(settings: &KafkaSettings, group: &str) -> rdkafka::ClientConfig {
    let mut config = consumer_config(settings, group);
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// One deadline for every answer a command needs from the cluster before it reads records
/// (metadata, offsets), and what to say when it passes: which broker did not answer within how
/// long, and the latest connection failure when librdkafka reported one.
pub struct Deadline {
    at: Instant,
    timeout: Duration,
    brokers: String,
}

impl Deadline {
    pub fn new(settings: &KafkaSettings, timeout: Duration) -> Self {
        Self {
            at: Instant::now() + timeout,
            timeout,
            brokers: crate::configuration::without_userinfo(&settings.brokers),
        }
    }

    /// The time left; `Err` saying the broker did not answer once there is none.
    fn left(&self, consumer: &ReaderConsumer) -> Result<Duration, String> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.no_answer(consumer))
        } else {
            Ok(left)
        }
    }

    fn no_answer(&self, consumer: &ReaderConsumer) -> String {
        // librdkafka queues its log for the consumer to serve: what it logged so far is
        // served now (the consumer has no partitions yet, so no record is polled away).
        for _ in 0..64 {
            let _ = consumer.poll(Duration::ZERO);
        }
        let latest = consumer
            .context()
            .error
            .lock()
            .clone()
            .map(|e| format!(" (latest connection error: {e})"))
            .unwrap_or_default();
        format!(
            "the broker at {} did not answer within {}{latest}",
            self.brokers,
            crate::duration::format(self.timeout)
        )
    }

    /// `error` of asking for `what`, as a person should read it: a request no broker answered
    /// in time says so (see [`Deadline::no_answer`]); any other error is librdkafka's, with
    /// `what`.
    fn explain(&self, consumer: &ReaderConsumer, what: &str, error: &KafkaError) -> String {
        use RDKafkaErrorCode as C;
        let unanswered = matches!(
            error.rdkafka_error_code(),
            Some(
                C::BrokerTransportFailure
                    | C::AllBrokersDown
                    | C::OperationTimedOut
                    | C::RequestTimedOut
                    | C::TimedOutQueue
            )
        ) || Instant::now() >= self.at;
        if unanswered {
            self.no_answer(consumer)
        } else {
            format!("{what}: {error}")
        }
    }
}

/// How a [`Reader`] opens its topics.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    pub start: Start,
    /// Keep reading after the end, until interrupted.
    pub follow: bool,
    /// Start after the group's committed offsets where it has some, and at `start` elsewhere.
    pub resume: bool,
    /// How long the cluster has to answer for the metadata and offsets, in all.
    pub timeout: Duration,
}

pub struct Reader {
    consumer: ReaderConsumer,
    /// The topics read, in the order given.
    topics: Vec<String>,
    /// (Topic, partition) → (next offset to read, end: the high watermark when reading began;
    /// `None` when following).
    positions: BTreeMap<(String, i32), (i64, Option<i64>)>,
    /// (Topic, partition) → the group's committed offset when reading began (absent: none).
    committed: BTreeMap<(String, i32), i64>,
    /// (Topic, partition) → the time (epoch ms) reading starts at, until a record written at or
    /// after it was read: the records before it are skipped. A broker may answer a request for
    /// offsets by time with an earlier offset than the first record at or after it (Tansu 0.6
    /// answers with the batch's, or 0 for a time after the last record), so the time is also
    /// checked here, record by record.
    not_before: BTreeMap<(String, i32), i64>,
    last_progress: Instant,
}

impl Reader {
    /// Opens `topic` as the consumer group `group`. With `follow`, reading never ends.
    pub fn open(
        settings: &KafkaSettings,
        group: &str,
        topic: &str,
        start: Start,
        follow: bool,
    ) -> Result<Self, ReadError> {
        let opening = Opening {
            start,
            follow,
            resume: false,
            timeout: METADATA_TIMEOUT,
        };
        Self::open_topics(settings, group, &[topic.to_string()], opening)
    }

    /// Opens every topic of `topics` as the consumer group `group`, from `opening.start` in each
    /// partition of each (or after the group's committed offsets, when `opening.resume`).
    /// `Err(NoSuchTopic)` names the first that does not exist.
    pub fn open_topics(
        settings: &KafkaSettings,
        group: &str,
        topics: &[String],
        opening: Opening,
    ) -> Result<Self, ReadError> {
        let deadline = Deadline::new(settings, opening.timeout);
        let consumer: ReaderConsumer = reader_config(settings, group)
            .create_with_context(Latest::default())
            .map_err(|e| ReadError::Kafka(format!("cannot create a Kafka consumer: {e}")))?;
        let kafka =
            |what: &str, e: &KafkaError| ReadError::Kafka(deadline.explain(&consumer, what, e));
        let left = || deadline.left(&consumer).map_err(ReadError::Kafka);
        let mut positions = BTreeMap::new();
        let mut committed = BTreeMap::new();
        let mut not_before = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        // A time ago is measured from now, once.
        let start_time = opening.start.time();
        for topic in topics {
            let partitions = partitions_of(&consumer, topic, &deadline)?;
            for (partition, offset) in committed_offsets(&consumer, topic, &partitions, &deadline)?
            {
                committed.insert((topic.clone(), partition), offset);
            }
            let from_time = match start_time {
                Some(ms) => offsets_at(&consumer, topic, &partitions, ms, &deadline)?,
                None => BTreeMap::new(),
            };
            for partition in partitions {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, left()?)
                    .map_err(|e| {
                        kafka(
                            &format!("cannot read the offsets of {topic}/{partition}"),
                            &e,
                        )
                    })?;
                let resumed = opening
                    .resume
                    .then(|| committed.get(&(topic.clone(), partition)).copied())
                    .flatten();
                let next = match (resumed, opening.start) {
                    (Some(offset), _) => offset,
                    (None, Start::Beginning) => low,
                    (None, Start::Committed) => committed
                        .get(&(topic.clone(), partition))
                        .copied()
                        .unwrap_or(low),
                    (None, Start::End) => high,
                    (None, Start::Offset(offset)) => offset,
                    (None, Start::Last(n)) => high.saturating_sub(n),
                    // No record at or after the time: from the end.
                    (None, Start::Time(_) | Start::Ago(_)) => {
                        from_time.get(&partition).copied().unwrap_or(high)
                    }
                }
                .clamp(low, high);
                if let (None, Some(ms)) = (resumed, start_time) {
                    not_before.insert((topic.clone(), partition), ms);
                }
                if opening.follow || next < high {
                    positions.insert(
                        (topic.clone(), partition),
                        (next, (!opening.follow).then_some(high)),
                    );
                    assignment
                        .add_partition_offset(topic, partition, Offset::Offset(next))
                        .map_err(|e| kafka("cannot assign", &e))?;
                }
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka(&format!("cannot read {}", topics.join(", ")), &e))?;
        Ok(Self {
            consumer,
            topics: topics.to_vec(),
            positions,
            committed,
            not_before,
            last_progress: Instant::now(),
        })
    }

    /// Records left to read (0 when following).
    pub fn remaining(&self) -> u64 {
        self.positions
            .values()
            .filter_map(|(next, end)| end.map(|end| u64::try_from(end - next).unwrap_or(0)))
            .sum()
    }

    /// Every partition was read to its end (never, when following).
    pub fn done(&self) -> bool {
        self.positions
            .values()
            .all(|(next, end)| end.is_some_and(|end| *next >= end))
    }

    /// The next record, `Ok(None)` when there is none yet (poll again) or none left. Blocking.
    pub fn next_message(&mut self) -> Result<Option<OwnedMessage>, String> {
        if self.done() {
            return Ok(None);
        }
        match self.consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let at = (message.topic().to_string(), message.partition());
                let Some((next, end)) = self.positions.get_mut(&at) else {
                    return Ok(None);
                };
                if end.is_some_and(|end| message.offset() >= end) {
                    // Written after reading began: left for the next run.
                    *next = end.unwrap_or(*next);
                    return Ok(None);
                }
                *next = message.offset() + 1;
                self.last_progress = Instant::now();
                if let Some(&ms) = self.not_before.get(&at) {
                    if message.timestamp().to_millis().is_none_or(|t| t < ms) {
                        return Ok(None);
                    }
                    self.not_before.remove(&at);
                }
                Ok(Some(message.detach()))
            }
            Some(Err(e)) => Err(format!("cannot read {}: {e}", self.topics.join(", "))),
            None if !self.following() && self.last_progress.elapsed() > STALL_TIMEOUT => {
                Err(format!(
                    "the broker served no record of {} for {} s",
                    self.topics.join(", "),
                    STALL_TIMEOUT.as_secs()
                ))
            }
            None => Ok(None),
        }
    }

    fn following(&self) -> bool {
        self.positions.values().any(|(_, end)| end.is_none())
    }

    /// The next dead letter (see [`Reader::next_message`]). Blocking.
    pub fn next(&mut self) -> Result<Option<StoredDeadLetter>, String> {
        Ok(self.next_message()?.map(|message| {
            let mut letter = StoredDeadLetter::from_message(&message);
            if letter.received_at.is_none() {
                letter.received_at = message.timestamp().to_millis();
            }
            letter
        }))
    }

    /// Whether the group had already read past `letter` (of the first topic: the dead-letter
    /// topic) when reading began.
    pub fn was_committed(&self, letter: &StoredDeadLetter) -> bool {
        let topic = self.topics.first().cloned().unwrap_or_default();
        self.committed
            .get(&(topic, letter.partition))
            .is_some_and(|&committed| letter.offset < committed)
    }

    /// Commits the group's offsets up to what was read. Blocking.
    pub fn commit(&self) -> Result<(), String> {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), (next, _)) in &self.positions {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| e.to_string())?;
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&offsets, CommitMode::Sync)
            .map_err(|e| format!("cannot commit offsets of {}: {e}", self.topics.join(", ")))
    }
}

/// The partitions of `topic`; `Err(NoSuchTopic)` when it does not exist.
fn partitions_of(
    consumer: &ReaderConsumer,
    topic: &str,
    deadline: &Deadline,
) -> Result<Vec<i32>, ReadError> {
    let metadata = consumer
        .fetch_metadata(
            Some(topic),
            deadline.left(consumer).map_err(ReadError::Kafka)?,
        )
        .map_err(|e| {
            ReadError::Kafka(deadline.explain(
                consumer,
                &format!("cannot fetch metadata for {topic}"),
                &e,
            ))
        })?;
    let mut partitions = Vec::new();
    for t in metadata.topics() {
        match t.error().map(RDKafkaErrorCode::from) {
            None => partitions.extend(t.partitions().iter().map(|p| p.id())),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                return Err(ReadError::NoSuchTopic(topic.to_string()))
            }
            Some(code) => return Err(ReadError::Kafka(format!("topic {topic}: {code}"))),
        }
    }
    partitions.sort_unstable();
    Ok(partitions)
}

/// The offset of the first record written at or after `ms` (epoch milliseconds) in each
/// partition of `partitions` that has one, like `kcat -o s@…`.
fn offsets_at(
    consumer: &ReaderConsumer,
    topic: &str,
    partitions: &[i32],
    ms: i64,
    deadline: &Deadline,
) -> Result<BTreeMap<i32, i64>, ReadError> {
    let mut times = TopicPartitionList::new();
    for partition in partitions {
        times
            .add_partition_offset(topic, *partition, Offset::Offset(ms))
            .map_err(|e| ReadError::Kafka(format!("cannot ask for offsets by time: {e}")))?;
    }
    let offsets = consumer
        .offsets_for_times(times, deadline.left(consumer).map_err(ReadError::Kafka)?)
        .map_err(|e| {
            ReadError::Kafka(deadline.explain(
                consumer,
                &format!("cannot find the offsets of {topic} by time"),
                &e,
            ))
        })?;
    Ok(partition_offsets(&offsets))
}

/// A look at the cluster — its topics, their offsets — every answer within one deadline.
pub struct Lookup {
    consumer: ReaderConsumer,
    deadline: Deadline,
}

impl Lookup {
    /// A consumer that only looks (it joins no group it could commit for); the cluster has
    /// `timeout` to answer everything asked of it.
    pub fn new(settings: &KafkaSettings, timeout: Duration) -> Result<Self, String> {
        let consumer = reader_config(settings, "hookstream-topics")
            .create_with_context(Latest::default())
            .map_err(|e| format!("cannot create a Kafka consumer: {e}"))?;
        Ok(Self {
            consumer,
            deadline: Deadline::new(settings, timeout),
        })
    }

    /// The name of every topic of the cluster, in order. Blocking.
    pub fn topic_names(&self) -> Result<Vec<String>, String> {
        let metadata = self
            .consumer
            .fetch_metadata(None, self.deadline.left(&self.consumer)?)
            .map_err(|e| {
                self.deadline
                    .explain(&self.consumer, "cannot list the cluster's topics", &e)
            })?;
        let mut names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Each partition's (low, high) watermarks of `topic`, in partition order. Blocking.
    pub fn watermarks(&self, topic: &str) -> Result<Vec<(i64, i64)>, String> {
        let partitions =
            partitions_of(&self.consumer, topic, &self.deadline).map_err(|e| e.to_string())?;
        partitions
            .into_iter()
            .map(|partition| {
                let left = self.deadline.left(&self.consumer)?;
                self.consumer
                    .fetch_watermarks(topic, partition, left)
                    .map_err(|e| {
                        self.deadline.explain(
                            &self.consumer,
                            &format!("cannot read the offsets of {topic}/{partition}"),
                            &e,
                        )
                    })
            })
            .collect()
    }
}

fn committed_offsets(
    consumer: &ReaderConsumer,
    topic: &str,
    partitions: &[i32],
    deadline: &Deadline,
) -> Result<BTreeMap<i32, i64>, ReadError> {
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(list, deadline.left(consumer).map_err(ReadError::Kafka)?)
        .map_err(|e| {
            ReadError::Kafka(deadline.explain(
                consumer,
                &format!("cannot read the committed offsets of {topic}"),
                &e,
            ))
        })?;
    Ok(partition_offsets(&committed))
}

/// The partitions of `list` that have an offset, with it.
fn partition_offsets(list: &TopicPartitionList) -> BTreeMap<i32, i64> {
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_points_read_like_kcat_offsets() {
        assert_eq!("beginning".parse(), Ok(Start::Beginning));
        assert_eq!("end".parse(), Ok(Start::End));
        assert_eq!("42".parse(), Ok(Start::Offset(42)));
        assert_eq!("-10".parse(), Ok(Start::Last(10)));
        assert!("yesterday".parse::<Start>().is_err());
    }

    #[test]
    fn a_start_may_be_a_time_or_a_time_ago() {
        assert_eq!(
            "@2026-12-07T10:00:00Z".parse(),
            Ok(Start::Time(1_796_637_600_000))
        );
        assert_eq!(
            "@2026-12-07T11:00:00+01:00".parse(),
            Ok(Start::Time(1_796_637_600_000))
        );
        assert_eq!("@1796637600000".parse(), Ok(Start::Time(1_796_637_600_000)));
        assert_eq!("-1h".parse(), Ok(Start::Ago(Duration::from_secs(3600))));
        assert_eq!(
            "-2d".parse(),
            Ok(Start::Ago(Duration::from_secs(2 * 86400)))
        );
        assert_eq!("@-30m".parse(), Ok(Start::Ago(Duration::from_secs(1800))));
        let err = "@yesterday".parse::<Start>().unwrap_err();
        assert!(
            err.contains("RFC 3339, e.g. @2026-12-07T10:00:00Z"),
            "{err}"
        );
        let err = "-1y2".parse::<Start>().unwrap_err();
        assert!(err.contains("a time ago (-1h, -30m, -2d)"), "{err}");
        let ago = Start::Ago(Duration::from_secs(3600))
            .time()
            .expect("a time");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        assert!((now - 3_600_000 - ago).abs() < 5_000, "{ago} vs {now}");
    }
}
