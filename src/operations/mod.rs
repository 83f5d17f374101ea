//! What the operator's commands do with the topics and dependencies, beside the command line that
//! calls them: [`tail`] prints a topic's records, [`list`] prints dead letters, [`replay`] brings
//! them back through today's normalization and the pipeline's own write path
//! ([`crate::ingest`]), and [`check`] tries every dependency a configuration names.

pub mod check;
pub mod list;
pub(crate) mod reader;
pub mod replay;
pub(crate) mod tail;
