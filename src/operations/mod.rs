//! What the operator's commands do with the topics and dependencies, beside the command line that
//! calls them: [`topics`] lists the topics (and creates those the configuration writes to), [`tail`] prints their records, [`list`] prints dead letters, [`replay`] brings
//! them back through today's normalization and the pipeline's own write path
//! ([`crate::ingest`]), [`check`] tries every dependency a configuration names, and [`spool`] reports on and
//! drains the durable spool.

pub mod check;
pub mod list;
pub(crate) mod reader;
pub mod replay;
pub mod spool;
pub(crate) mod tail;
pub mod topics;
