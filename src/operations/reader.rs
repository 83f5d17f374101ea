//! Reading a topic from a starting point, up to the end it had when reading began (or on, when
//! following), partition by partition, the way `kcat -C` and `rpk topic consume` do.

use crate::configuration::KafkaSettings;
use crate::dead_letter::StoredDeadLetter;
use crate::kafka::consumer_config;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
}

impl std::str::FromStr for Start {
    type Err = String;

    /// `beginning`, `end`, an offset, or `-N` for the last N records of each partition.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "beginning" | "start" | "oldest" => Ok(Start::Beginning),
            "end" | "newest" => Ok(Start::End),
            _ => match text.strip_prefix('-') {
                Some(n) => n.parse().map(Start::Last),
                None => text.parse().map(Start::Offset),
            }
            .map_err(|_| {
                format!("{text:?} is not beginning, end, an offset or -N (the last N records)")
            }),
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

pub struct Reader {
    consumer: BaseConsumer,
    /// The topics read, in the order given.
    topics: Vec<String>,
    /// (Topic, partition) → (next offset to read, end: the high watermark when reading began;
    /// `None` when following).
    positions: BTreeMap<(String, i32), (i64, Option<i64>)>,
    /// (Topic, partition) → the group's committed offset when reading began (absent: none).
    committed: BTreeMap<(String, i32), i64>,
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
        Self::open_topics(settings, group, &[topic.to_string()], start, follow)
    }

    /// Opens every topic of `topics` as the consumer group `group`, from `start` in each
    /// partition of each. `Err(NoSuchTopic)` names the first that does not exist.
    pub fn open_topics(
        settings: &KafkaSettings,
        group: &str,
        topics: &[String],
        start: Start,
        follow: bool,
    ) -> Result<Self, ReadError> {
        let kafka =
            |what: &str, e: &dyn std::fmt::Display| ReadError::Kafka(format!("{what}: {e}"));
        let consumer: BaseConsumer = consumer_config(settings, group)
            .create()
            .map_err(|e| kafka("cannot create a Kafka consumer", &e))?;
        let mut positions = BTreeMap::new();
        let mut committed = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for topic in topics {
            let partitions = partitions_of(&consumer, topic)?;
            for (partition, offset) in committed_offsets(&consumer, topic, &partitions)? {
                committed.insert((topic.clone(), partition), offset);
            }
            for partition in partitions {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                    .map_err(|e| {
                        kafka(
                            &format!("cannot read the offsets of {topic}/{partition}"),
                            &e,
                        )
                    })?;
                let next = match start {
                    Start::Beginning => low,
                    Start::Committed => committed
                        .get(&(topic.clone(), partition))
                        .copied()
                        .unwrap_or(low),
                    Start::End => high,
                    Start::Offset(offset) => offset,
                    Start::Last(n) => high.saturating_sub(n),
                }
                .clamp(low, high);
                if follow || next < high {
                    positions.insert(
                        (topic.clone(), partition),
                        (next, (!follow).then_some(high)),
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
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, ReadError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| ReadError::Kafka(format!("cannot fetch metadata for {topic}: {e}")))?;
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
    Ok(partitions)
}

/// The name of every topic of the cluster, in order. Blocking.
pub fn topic_names(settings: &KafkaSettings) -> Result<Vec<String>, String> {
    let consumer = consumer(settings)?;
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|e| format!("cannot list the cluster's topics: {e}"))?;
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// Each partition's (low, high) watermarks of `topic`, in partition order. Blocking.
pub fn watermarks(settings: &KafkaSettings, topic: &str) -> Result<Vec<(i64, i64)>, String> {
    let consumer = consumer(settings)?;
    let mut partitions = partitions_of(&consumer, topic).map_err(|e| e.to_string())?;
    partitions.sort_unstable();
    partitions
        .into_iter()
        .map(|partition| {
            consumer
                .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                .map_err(|e| format!("cannot read the offsets of {topic}/{partition}: {e}"))
        })
        .collect()
}

/// A consumer that only looks (it joins no group it could commit for).
fn consumer(settings: &KafkaSettings) -> Result<BaseConsumer, String> {
    consumer_config(settings, "hookstream-topics")
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer: {e}"))
}

fn committed_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, ReadError> {
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(list, METADATA_TIMEOUT)
        .map_err(|e| {
            ReadError::Kafka(format!("cannot read the committed offsets of {topic}: {e}"))
        })?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
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
}
