//! Integration tests: requests go through the real HTTP server (port 0) into a real Kafka-protocol
//! broker (`HOOKSTREAM_TEST_BROKERS`, started by `scripts/test`, or one of the test process's own)
//! and are read back from it; shared deduplication uses a real Redis (`HOOKSTREAM_TEST_REDIS`, or
//! one of the test process's own). `HOOKSTREAM_TEST_LOG=debug` shows the apps' logs.

mod binary;
mod configured;
mod dead_letters;
mod errors;
mod foul_weather;
mod identity;
mod lasoexperience;
mod limits;
mod livesession;
mod operations;
mod presets;
mod quickstart;
mod redis_edges;
mod rejections;
mod reload;
mod replicas;
mod schema_registry;
mod secured_kafka;
mod seismic;
mod spool;
mod spool_integrity;
#[path = "../support/mod.rs"]
mod support;
mod tail;
mod tls;
mod topics_create;
