//! [`LogError`]: why a log refused an append, a flush or an open.

use crate::{Epoch, LogGroupId, WalError};

/// An error from a [`CommitLog`](super::CommitLog) or a
/// [`LogBackend`](super::LogBackend).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The local write-ahead log failed (its message says what to do).
    #[error(transparent)]
    Wal(#[from] WalError),

    /// A newer writer took the log over: this writer must step down.
    #[error(
        "the log of log group {group} was taken over by a newer writer (this one is at epoch {epoch}): {detail}; this node must stop writing to it"
    )]
    Fenced {
        /// The log group.
        group: LogGroupId,
        /// This writer's epoch.
        epoch: Epoch,
        /// What the log said.
        detail: String,
    },

    /// The log service cannot be reached or has no quorum.
    #[error("the log is unavailable: {detail}; retry later")]
    Unavailable {
        /// What failed.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A record that cannot be read back, with where it is.
    #[error("the log is corrupt: {detail}")]
    Corrupt {
        /// What and where.
        detail: String,
    },

    /// A record larger than the log takes.
    #[error(
        "a log record of {len} bytes is larger than the log takes (at most {max}); make the state or messages of one invocation smaller"
    )]
    TooLarge {
        /// The record's length.
        len: usize,
        /// The largest record the log takes.
        max: usize,
    },

    /// An earlier write or flush failed; reopen the log to continue.
    #[error(
        "the log is poisoned by an earlier write or flush failure; reopen it to recover from what is durable"
    )]
    Poisoned,
}
