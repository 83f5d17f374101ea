//! The spool's errors, one type per question a caller asks.

use std::path::PathBuf;

/// Why a spool directory cannot be used at all (never because of what its files hold).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("spool.dir {} is in use by another hookstream process (one process per spool directory)", .0.display())]
    InUse(PathBuf),
    #[error("spool.dir {}: {what}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("spool.dir {}: segment numbers are exhausted (a segment is numbered {last})", dir.display())]
    Exhausted { dir: PathBuf, last: u64 },
}

/// Why a record could not be spooled: the webhook is answered 503, and nothing was kept.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("the spool is full (spool.max_bytes = {0} bytes)")]
    Full(u64),
    /// The directory or its active segment is gone or unwritable, the disk is full, or the disk
    /// did not answer within the request's deadline.
    #[error("the spool cannot be written: {0}")]
    Unwritable(String),
}

/// Why a spooled record could not be read back.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The bytes could not be read (no file descriptors, an I/O error): the record is intact as
    /// far as anyone knows, and is tried again (the error is counted and logged where it
    /// happened).
    Io,
    /// The bytes read fail their checksum or framing: damage, kept aside, counted and dropped.
    Damaged,
}

/// Why the spool holds records it cannot get to Kafka now, though the broker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ForwardingProblem {
    /// They cannot be read back (an I/O error): kept, tried again.
    Unreadable(String),
    /// None was acknowledged for a while although the broker answers metadata.
    Stalled(String),
}
