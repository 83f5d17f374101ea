#!/usr/bin/env python3
"""Reads hookstream's topics as a consumer group and prints every record as a JSON line.

hookstream writes each record as Avro in one of two framings:
  * Avro single-object encoding (no Schema Registry): C3 01, the schema's 8-byte CRC-64-AVRO
    fingerprint, then the datum; decoded with the shipped avro/webhook_event.avsc (found beside
    this file, whatever the working directory);
  * the Confluent wire format (with a Schema Registry): 00, the 4-byte schema id, then the datum;
    decoded by Confluent's own AvroDeserializer with the schema the registry has under that id --
    the code to copy into a consumer of your own.

    python consumer.py --brokers localhost:9092 --topic '^webhooks\\..*'
    python consumer.py --brokers localhost:9092 --topic webhooks.livesession.js_error \\
        --topic webhooks.github.issues_opened --group my-service
    python consumer.py --brokers localhost:19092 --topic '^webhooks\\..*' \\
        --registry http://localhost:18081

It subscribes as the consumer group --group to the topics given (a name starting with ^ is a
regular expression: every topic it matches, now and later), starts where the group left off (at
the beginning the first time), and commits each record's offset once the record is processed
(printed): stopped and started again, it goes on after the last record it printed, and a crash
repeats at most the record it was processing. It runs until interrupted (Ctrl-C, SIGTERM: the
record in hand is finished first), or until --idle seconds pass without a record (counted from
joining the group), or after --count records.
"""

import argparse
import datetime
import io
import json
import pathlib
import signal
import struct
import sys
import time

import fastavro
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

# Relative to this file, not to the working directory.
SCHEMA_FILE = pathlib.Path(__file__).resolve().parent.parent.parent / "avro" / "webhook_event.avsc"
SINGLE_OBJECT = b"\xc3\x01"
CONFLUENT = b"\x00"


def fingerprint(schema_json: dict) -> bytes:
    """The CRC-64-AVRO fingerprint of a schema's parsing canonical form, as single-object
    encoding writes it (little-endian)."""
    canonical = fastavro.schema.to_parsing_canonical_form(schema_json)
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


class Decoder:
    def __init__(self, schema_file: pathlib.Path, registry: str | None, auth: str | None):
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


def topics_of(given: list[str]) -> list[str]:
    """--topic values: names and ^patterns, each given alone or comma-separated."""
    return [t.strip() for value in given for t in value.split(",") if t.strip()]


class Stop:
    """Ctrl-C and SIGTERM ask the loop to stop once the record in hand is printed and committed:
    raised as an exception between the two, they would leave a printed record uncommitted, and
    the next run would print it again."""

    def __init__(self):
        self.requested = False

    def __call__(self, *_):
        self.requested = True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", required=True, help="bootstrap servers, host:port[,…]")
    parser.add_argument(
        "--topic",
        required=True,
        action="append",
        help="a topic, or a regular expression starting with ^ (e.g. '^webhooks\\..*'); repeat it, or separate with commas",
    )
    parser.add_argument("--group", default="hookstream-example-consumer", help="the consumer group (default %(default)s)")
    parser.add_argument(
        "--prefix",
        default="webhooks",
        help="hookstream's kafka.topic_prefix: {prefix}.canary and {prefix}.dead_letter, which hold no events, are skipped (default %(default)s)",
    )
    parser.add_argument("--registry", help="Schema Registry URL (for Confluent-framed values)")
    parser.add_argument("--registry-auth", help="user:password for the registry")
    parser.add_argument("--schema", default=SCHEMA_FILE, type=pathlib.Path, help="the .avsc of single-object values")
    parser.add_argument("--count", type=int, help="stop after this many records")
    parser.add_argument(
        "--idle",
        type=float,
        help="stop after this many seconds without a record, counted from joining the group (default: never)",
    )
    args = parser.parse_args()

    # From here on, a stop finishes what is in hand: nothing is cut off half-done.
    stop = Stop()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    topics = topics_of(args.topic)
    not_events = {f"{args.prefix}.canary", f"{args.prefix}.dead_letter"}
    decoder = Decoder(args.schema, args.registry, args.registry_auth)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        # A group that has committed nothing yet starts at the beginning.
        "auto.offset.reset": "earliest",
        # Offsets are committed after processing, below: never for a record not yet printed.
        "enable.auto.commit": False,
    })
    named = [t for t in topics if not t.startswith("^")]
    if named:
        metadata = consumer.list_topics(timeout=10)
        for name in named:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                print(f"consumer: topic {name} does not exist", file=sys.stderr)
                consumer.close()
                return 1
    if stop.requested:
        consumer.close()
        return 0

    # None until the group is joined: that takes a few seconds, or after a crash until the
    # crashed member's session expires (45 s by default), and --idle counts from it.
    last_record = None

    def assigned(_consumer, partitions):
        nonlocal last_record
        last_record = time.monotonic()

    consumer.subscribe(topics, on_assign=assigned)
    printed = 0
    try:
        # A stop is seen within a poll's second.
        while not stop.requested and (args.count is None or printed < args.count):
            message = consumer.poll(1.0)
            if message is None:
                if (
                    args.idle is not None
                    and last_record is not None
                    and time.monotonic() - last_record >= args.idle
                ):
                    break
                continue
            if message.error():
                if message.error().fatal():
                    raise KafkaException(message.error())
                print(f"consumer: {message.error()}", file=sys.stderr)
                continue
            last_record = time.monotonic()
            if message.topic() not in not_events:
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
            # Processed: the group goes on after it, even if this process stops now.
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
