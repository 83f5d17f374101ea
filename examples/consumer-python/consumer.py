#!/usr/bin/env python3
"""Reads a hookstream topic and prints every record as a JSON line.

hookstream writes each record as Avro in one of two framings:
  * Avro single-object encoding (no Schema Registry): C3 01, the schema's 8-byte CRC-64-AVRO
    fingerprint, then the datum; decoded with the shipped avro/webhook_event.avsc;
  * the Confluent wire format (with a Schema Registry): 00, the 4-byte schema id, then the datum;
    decoded by Confluent's own AvroDeserializer with the schema the registry has under that id —
    the code to copy into a consumer of your own.

    python consumer.py --brokers localhost:9092 --topic webhooks.livesession.js_error
    python consumer.py --brokers localhost:19092 --topic webhooks.livesession.js_error \
        --registry http://localhost:18081

It reads every partition from the beginning and stops when no record arrived for --idle seconds
(or after --count records).
"""

import argparse
import datetime
import io
import json
import os
import struct
import sys

import fastavro
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "avro", "webhook_event.avsc")
SINGLE_OBJECT = b"\xc3\x01"
CONFLUENT = b"\x00"


def fingerprint(schema_json: dict) -> bytes:
    """The CRC-64-AVRO fingerprint of a schema's parsing canonical form, as single-object
    encoding writes it (little-endian)."""
    canonical = fastavro.schema.to_parsing_canonical_form(schema_json)
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


class Decoder:
    def __init__(self, schema_file: str, registry: str | None, auth: str | None):
        with open(schema_file) as f:
            shipped = json.load(f)
        self.shipped = fastavro.parse_schema(shipped)
        self.shipped_fingerprint = fingerprint(shipped)
        self.confluent = None
        if registry:
            conf = {"url": registry}
            if auth:
                conf["basic.auth.user.info"] = auth
            # The writer's schema is fetched (and cached) by the id each value names.
            self.confluent = AvroDeserializer(SchemaRegistryClient(conf))

    def decode(self, value: bytes, topic: str) -> dict:
        if value.startswith(SINGLE_OBJECT):
            if value[2:10] != self.shipped_fingerprint:
                raise ValueError("single-object value written with another schema than the shipped one")
            return fastavro.schemaless_reader(io.BytesIO(value[10:]), self.shipped)
        if value.startswith(CONFLUENT) and len(value) >= 5:
            if self.confluent is None:
                (schema_id,) = struct.unpack(">I", value[1:5])
                raise ValueError(f"schema id {schema_id}: a Confluent-framed value needs --registry")
            return self.confluent(value, SerializationContext(topic, MessageField.VALUE))
        raise ValueError("neither Avro single-object encoding nor the Confluent wire format")


def as_json(value):
    """timestamp-millis fields arrive as datetimes: printed as epoch milliseconds again."""
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(f"cannot print {type(value).__name__}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", required=True, help="bootstrap servers, host:port[,…]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--registry", help="Schema Registry URL (for Confluent-framed values)")
    parser.add_argument("--registry-auth", help="user:password for the registry")
    parser.add_argument("--schema", default=SCHEMA_FILE, help="the .avsc of single-object values")
    parser.add_argument("--count", type=int, help="stop after this many records")
    parser.add_argument("--idle", type=float, default=10.0, help="stop after this many seconds without a record")
    args = parser.parse_args()

    decoder = Decoder(args.schema, args.registry, args.registry_auth)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": "hookstream-example-consumer",
        "enable.auto.commit": False,
    })
    metadata = consumer.list_topics(args.topic, timeout=10)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None:
        print(f"consumer: topic {args.topic} does not exist", file=sys.stderr)
        return 1
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in topic.partitions])
    printed = 0
    while args.count is None or printed < args.count:
        message = consumer.poll(args.idle)
        if message is None:
            break
        if message.error():
            print(f"consumer: {message.error()}", file=sys.stderr)
            return 1
        line = {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().decode() if message.key() is not None else None,
            "headers": {k: v.decode() for k, v in (message.headers() or [])},
        }
        try:
            line["value"] = decoder.decode(message.value(), message.topic())
        except ValueError as e:
            line["undecodable"] = str(e)
        print(json.dumps(line, default=as_json), flush=True)
        printed += 1
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
