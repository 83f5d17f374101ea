//! Reading messages back from the broker and decoding them the way a consumer would.

use apache_avro::types::Value;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hookstream-tests")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

pub fn read_blocking(brokers: &str, topic: &str, expected: usize) -> Vec<OwnedMessage> {
    let consumer = consumer(brokers);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("partition");
    }
    assert!(assignment.count() > 0, "topic {topic} has no partitions");
    consumer.assign(&assignment).expect("assign");
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut extra_deadline = None;
    loop {
        let now = Instant::now();
        if messages.len() >= expected {
            let until = *extra_deadline.get_or_insert(now + Duration::from_millis(1500));
            if now >= until {
                break;
            }
        } else if now >= deadline {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => messages.push(m.detach()),
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    assert_eq!(messages.len(), expected, "messages read back from {topic}");
    messages
}

pub fn headers_of(message: &OwnedMessage) -> HashMap<String, String> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn key_of(message: &OwnedMessage) -> Option<String> {
    message
        .key()
        .map(|k| String::from_utf8(k.to_vec()).expect("UTF-8 key"))
}

/// Decodes a message value the way a consumer holding only the `.avsc` file would: check the
/// single-object marker and fingerprint, then read the datum with a stock Avro reader.
pub fn decode(message: &OwnedMessage) -> HashMap<String, Value> {
    let schema_text = std::fs::read_to_string("avro/webhook_event.avsc").expect("schema file");
    let schema = apache_avro::Schema::parse_str(&schema_text).expect("schema parses");
    let value = message.payload().expect("message has a value");
    assert_eq!(&value[..2], &[0xC3, 0x01], "single-object marker");
    // The specification's fingerprint, which apache-avro's own differs from for logical types
    // (see hookstream::avro::canonical; checked against fastavro there).
    let json: serde_json::Value = serde_json::from_str(&schema_text).expect("schema JSON");
    let fingerprint = hookstream::avro::canonical::fingerprint(&json);
    assert_eq!(&value[2..10], fingerprint.as_slice(), "schema fingerprint");
    let mut datum = &value[10..];
    let decoded = apache_avro::from_avro_datum(&schema, &mut datum, None).expect("datum decodes");
    assert!(datum.is_empty(), "trailing bytes after the datum");
    let Value::Record(fields) = decoded else {
        panic!("not a record")
    };
    fields.into_iter().collect()
}

/// The string inside a nullable string field, or `None` for null.
pub fn nullable_string(v: &Value) -> Option<String> {
    match v {
        Value::Union(_, inner) => match inner.as_ref() {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("not a union: {other:?}"),
    }
}

pub fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Enum(_, s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// Creates `topic` (one partition) through the Admin API, as an operator would.
pub async fn create_topic(brokers: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

/// Writes one record with these headers, as a producer other than hookstream would.
pub async fn produce_raw(
    brokers: &str,
    topic: &str,
    key: Option<&str>,
    value: &[u8],
    headers: &[(&str, &str)],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let headers = headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(*value),
        })
    });
    let mut record = FutureRecord::<str, [u8]>::to(topic)
        .payload(value)
        .headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("record written");
}
