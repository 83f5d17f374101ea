//! What the operator's commands do with the topics, beside the command line that calls them:
//! [`tail`] prints a topic's records, [`list`] prints dead letters and [`replay`] brings them back
//! through today's normalization and the pipeline's own write path ([`crate::ingest`]).

pub mod list;
mod reader;
pub mod replay;
pub(crate) mod tail;
