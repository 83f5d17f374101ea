//! Integration tests: requests go through the real HTTP server (port 0) into a real Kafka-protocol
//! broker (`HOOKSTREAM_TEST_BROKERS`, started by `scripts/test`) and are read back from it.

mod binary;
mod errors;
mod helpers;
mod lasoexperience;
mod livesession;
mod observability;
mod operations;
mod schema_registry;
mod seismic;
