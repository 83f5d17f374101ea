//! Integration tests: requests go through the real HTTP server (port 0) into a real Kafka-protocol
//! broker (`HOOKSTREAM_TEST_BROKERS`, started by `scripts/test`) and are read back from it.

mod binary;
mod dead_letters;
mod errors;
mod foul_weather;
mod lasoexperience;
mod limits;
mod livesession;
mod observability;
mod operations;
mod schema_registry;
mod seismic;
#[path = "../support/mod.rs"]
mod support;
