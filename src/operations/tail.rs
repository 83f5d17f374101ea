//! `hookstream tail`: print the records of a topic as JSON lines, decoded with the shipped schema.

use crate::avro::{datum_of, schema};
use crate::configuration::KafkaSettings;
use crate::kafka::consumer_config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Prints up to `count` records from every partition of `topic`, from the beginning, waiting at
/// most `wait` for them. Returns how many were printed.
pub fn tail(
    settings: &KafkaSettings,
    topic: &str,
    count: usize,
    wait: Duration,
) -> Result<usize, String> {
    let consumer: BaseConsumer = consumer_config(settings, "hookstream-tail")
        .create()
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("cannot fetch metadata for {topic}: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        if let Some(err) = t.error() {
            return Err(format!("topic {topic}: {err:?}"));
        }
        for p in t.partitions() {
            assignment
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;

    let deadline = Instant::now() + wait;
    let mut printed = 0;
    while printed < count && Instant::now() < deadline {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result.map_err(|e| format!("consume: {e}"))?;
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let record = match message.payload().map(datum_of) {
            Some(Some(datum)) => decode(datum)?,
            _ => serde_json::json!({"undecodable": true}),
        };
        println!(
            "{}",
            serde_json::json!({
                "partition": message.partition(),
                "offset": message.offset(),
                "key": key,
                "value": record,
            })
        );
        printed += 1;
    }
    Ok(printed)
}

fn decode(mut datum: &[u8]) -> Result<serde_json::Value, String> {
    let value = apache_avro::from_avro_datum(schema(), &mut datum, None)
        .map_err(|e| format!("value does not decode with avro/webhook_event.avsc: {e}"))?;
    serde_json::Value::try_from(value).map_err(|e| e.to_string())
}
