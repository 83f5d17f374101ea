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
    topic: String,
    /// Partition → (next offset to read, end: the high watermark when reading began; `None`
    /// when following).
    positions: BTreeMap<i32, (i64, Option<i64>)>,
    /// Partition → the group's committed offset when reading began (absent: none).
    committed: BTreeMap<i32, i64>,
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
        let kafka =
            |what: &str, e: &dyn std::fmt::Display| ReadError::Kafka(format!("{what}: {e}"));
        let consumer: BaseConsumer = consumer_config(settings, group)
            .create()
            .map_err(|e| kafka("cannot create a Kafka consumer", &e))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| kafka(&format!("cannot fetch metadata for {topic}"), &e))?;
        let mut partitions = Vec::new();
        for t in metadata.topics() {
            match t.error().map(RDKafkaErrorCode::from) {
                None => partitions.extend(t.partitions().iter().map(|p| p.id())),
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                    return Err(ReadError::NoSuchTopic(topic.to_string()))
                }
                Some(code) => return Err(kafka(&format!("topic {topic}"), &code)),
            }
        }
        let committed = committed_offsets(&consumer, topic, &partitions)?;
        let mut positions = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
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
                Start::Committed => committed.get(&partition).copied().unwrap_or(low),
                Start::End => high,
                Start::Offset(offset) => offset,
                Start::Last(n) => high.saturating_sub(n),
            }
            .clamp(low, high);
            if follow || next < high {
                positions.insert(partition, (next, (!follow).then_some(high)));
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(next))
                    .map_err(|e| kafka("cannot assign", &e))?;
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka(&format!("cannot read {topic}"), &e))?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
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
                let Some((next, end)) = self.positions.get_mut(&message.partition()) else {
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
            Some(Err(e)) => Err(format!("cannot read {}: {e}", self.topic)),
            None if !self.following() && self.last_progress.elapsed() > STALL_TIMEOUT => {
                Err(format!(
                    "the broker served no record of {} for {} s",
                    self.topic,
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

    /// Whether the group had already read past `letter` when reading began.
    pub fn was_committed(&self, letter: &StoredDeadLetter) -> bool {
        self.committed
            .get(&letter.partition)
            .is_some_and(|&committed| letter.offset < committed)
    }

    /// Commits the group's offsets up to what was read. Blocking.
    pub fn commit(&self) -> Result<(), String> {
        let mut offsets = TopicPartitionList::new();
        for (partition, (next, _)) in &self.positions {
            offsets
                .add_partition_offset(&self.topic, *partition, Offset::Offset(*next))
                .map_err(|e| e.to_string())?;
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&offsets, CommitMode::Sync)
            .map_err(|e| format!("cannot commit offsets of {}: {e}", self.topic))
    }
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
