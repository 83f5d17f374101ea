//! Test support shared by the test targets: the app harness ([`app`]), reading Kafka back
//! ([`kafka`]), external tools, brokers, Redis and a real Schema Registry ([`tools`]), the
//! binary as a child process ([`process`]), a fault-injecting Kafka proxy ([`proxy`]), raw HTTP
//! for misbehaving clients ([`raw`]), a Schema Registry double for its faults ([`registry`]) and
//! a cluster that requires SASL, TLS and client certificates ([`secured`]).
//!
//! Each test target compiles this module on its own. The API target uses nearly all of it and
//! compiles it with every lint on, so a helper no test uses is found there; the few helpers
//! only the fault suite or the deployment checks use say so where they are defined. Those two
//! targets use parts, and allow the rest to be unused where they declare this module.

pub mod app;
pub mod kafka;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod registry;
pub mod secured;
pub mod tools;

pub use app::*;
pub use kafka::*;
pub use tools::*;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_hookstream");
