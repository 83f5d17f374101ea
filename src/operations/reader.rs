//! Reading the dead-letter topic from a starting point up to the end it had when reading began.

use crate::configuration::KafkaSettings;
use crate::dead_letter::StoredDeadLetter;
use crate::kafka::consumer_config;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the broker to serve the next record before giving up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every record still in the topic.
    Beginning,
    /// After the consumer group's committed offsets (the beginning where it has none).
    Committed,
}

pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
    /// Partition → (next offset to read, end: the high watermark when reading began).
    positions: BTreeMap<i32, (i64, i64)>,
    /// Partition → the group's committed offset when reading began (absent: none).
    committed: BTreeMap<i32, i64>,
    last_progress: Instant,
}

impl Reader {
    /// Opens `topic` for the consumer group `group`. A topic that does not exist reads as empty.
    pub fn open(
        settings: &KafkaSettings,
        group: &str,
        topic: &str,
        start: Start,
    ) -> Result<Self, String> {
        let consumer: BaseConsumer = consumer_config(settings, group)
            .create()
            .map_err(|e| format!("cannot create a Kafka consumer: {e}"))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| format!("cannot fetch metadata for {topic}: {e}"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let committed = committed_offsets(&consumer, topic, &partitions)?;
        let mut positions = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                .map_err(|e| format!("cannot read the offsets of {topic}/{partition}: {e}"))?;
            let next = match start {
                Start::Beginning => low,
                Start::Committed => committed.get(&partition).copied().unwrap_or(low).max(low),
            };
            if next < high {
                positions.insert(partition, (next, high));
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(next))
                    .map_err(|e| e.to_string())?;
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|e| format!("cannot read {topic}: {e}"))?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            positions,
            committed,
            last_progress: Instant::now(),
        })
    }

    /// Whether the group had already read past `letter` when reading began.
    pub fn was_committed(&self, letter: &StoredDeadLetter) -> bool {
        self.committed
            .get(&letter.partition)
            .is_some_and(|&committed| letter.offset < committed)
    }

    /// Records left to read.
    pub fn remaining(&self) -> u64 {
        self.positions
            .values()
            .map(|(next, end)| u64::try_from(end - next).unwrap_or(0))
            .sum()
    }

    pub fn done(&self) -> bool {
        self.positions.values().all(|(next, end)| next >= end)
    }

    /// The next dead letter, `Ok(None)` when there is none yet (poll again) or none left.
    /// Blocking.
    pub fn next(&mut self) -> Result<Option<StoredDeadLetter>, String> {
        if self.done() {
            return Ok(None);
        }
        match self.consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let Some((next, end)) = self.positions.get_mut(&message.partition()) else {
                    return Ok(None);
                };
                if message.offset() >= *end {
                    // Written after reading began: left for the next run.
                    *next = *end;
                    return Ok(None);
                }
                *next = message.offset() + 1;
                self.last_progress = Instant::now();
                let mut letter = StoredDeadLetter::from_message(&message);
                if letter.received_at.is_none() {
                    letter.received_at = message.timestamp().to_millis();
                }
                Ok(Some(letter))
            }
            Some(Err(e)) => Err(format!("cannot read {}: {e}", self.topic)),
            None if self.last_progress.elapsed() > STALL_TIMEOUT => Err(format!(
                "the broker served no record of {} for {} s",
                self.topic,
                STALL_TIMEOUT.as_secs()
            )),
            None => Ok(None),
        }
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
) -> Result<BTreeMap<i32, i64>, String> {
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(list, METADATA_TIMEOUT)
        .map_err(|e| format!("cannot read the committed offsets of {topic}: {e}"))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}
