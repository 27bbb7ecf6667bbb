//! The log trait: how a log group's single writer talks to its log.
//!
//! **Stand-in until `statefn_store::log` lands; the lead will switch the
//! import.** This is a verbatim copy of the agreed shape (issue 10, the
//! shared notes on the log trait) so that the JetStream implementation can be
//! built and tested in parallel with the real trait. Nothing here is
//! JetStream-specific; the only additions are the constructors of
//! [`PendingFlush`] and the fields of [`LogStats`], which the notes leave open.

use std::fmt;

pub use statefn_store::wal::{Lsn, WalError};

/// A writer generation of one log group. A log refuses appends from an older
/// epoch once a newer writer has fenced it.
///
/// ```
/// use statefn::cluster::Epoch;
/// assert!(Epoch(2) > Epoch(1));
/// assert_eq!(Epoch(7).to_string(), "7");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A log group: the unit of logging, ownership and failover.
///
/// ```
/// use statefn::cluster::LogGroupId;
/// assert_eq!(LogGroupId(7).to_string(), "7");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogGroupId(pub u16);

impl fmt::Display for LogGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One log group's log, as its single writer sees it.
pub trait CommitLog: Send + std::fmt::Debug {
    /// Buffers one record for the next `flush`; returns the position it will have.
    /// # Durability: none until a flush covering it has resolved.
    fn append(&mut self, record: &[u8]) -> Result<Lsn, LogError>;
    /// Hands every appended record to the log (write to the OS / publish) and returns a
    /// handle that resolves once they are durable (fsynced / acknowledged by a quorum).
    /// Several flushes may be in flight; each resolves only after the earlier ones.
    fn flush(&mut self) -> Result<PendingFlush, LogError>;
    /// Highest position known durable (0 = none).
    fn durable_lsn(&self) -> Lsn;
    /// Deletes records below `lsn` (a checkpoint covers them); may keep more.
    fn truncate_before(&mut self, lsn: Lsn) -> Result<(), LogError>;
    /// This writer's epoch.
    fn epoch(&self) -> Epoch;
    /// Bytes and pieces currently held, for status and checkpoint triggers.
    fn stats(&self) -> LogStats;
}

/// What a [`PendingFlush`] waits on; implemented by each log.
pub trait FlushWait: Send {
    /// Blocks until the flush is durable or has failed.
    fn wait(self: Box<Self>) -> Result<Lsn, LogError>;
}

/// Resolves when a flush is durable; `Send` so another thread can wait on it.
#[must_use]
pub struct PendingFlush {
    up_to: Lsn,
    wait: Box<dyn FlushWait>,
}

impl fmt::Debug for PendingFlush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingFlush")
            .field("up_to", &self.up_to)
            .finish_non_exhaustive()
    }
}

struct Ready(Lsn);

impl FlushWait for Ready {
    fn wait(self: Box<Self>) -> Result<Lsn, LogError> {
        Ok(self.0)
    }
}

impl PendingFlush {
    /// A flush covering records up to `up_to` that resolves through `wait`.
    pub fn new(up_to: Lsn, wait: Box<dyn FlushWait>) -> Self {
        PendingFlush { up_to, wait }
    }

    /// A flush that is already durable (nothing was appended since the last one).
    ///
    /// ```
    /// use statefn::cluster::{Lsn, PendingFlush};
    /// let flush = PendingFlush::ready(Lsn(4));
    /// assert_eq!(flush.up_to(), Lsn(4));
    /// assert_eq!(flush.wait().unwrap(), Lsn(4));
    /// ```
    pub fn ready(up_to: Lsn) -> Self {
        PendingFlush {
            up_to,
            wait: Box::new(Ready(up_to)),
        }
    }

    /// The last position this flush covers.
    pub fn up_to(&self) -> Lsn {
        self.up_to
    }

    /// Blocks until durable. Err => the log is poisoned/fenced; nothing after the last
    /// durable position may be treated as committed.
    ///
    /// # Errors
    /// [`LogError::Fenced`] when a newer writer took the log over,
    /// [`LogError::Unavailable`] when the log could not confirm the records
    /// in time; either way reopen the log before writing again.
    pub fn wait(self) -> Result<Lsn, LogError> {
        self.wait.wait()
    }
}

/// Opens the logs of log groups (the local WAL directory tree, or JetStream streams).
pub trait LogBackend: Send + Sync + std::fmt::Debug {
    /// Opens `group`'s log as its only writer at `epoch`, fencing out any earlier writer,
    /// and returns it with a reader of the records at positions `>= from`, in order
    /// (fence/control records of the implementation are not returned).
    fn open(&self, group: LogGroupId, epoch: Epoch, from: Lsn) -> Result<OpenedLog, LogError>;
}

/// A freshly opened log and the records to replay.
pub struct OpenedLog {
    /// The writer.
    pub log: Box<dyn CommitLog>,
    /// Streamed, so a long log is not held in memory at once.
    pub records: Box<dyn Iterator<Item = Result<LogRecord, LogError>> + Send>,
}

impl fmt::Debug for OpenedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedLog")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// One record read back from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its position.
    pub lsn: Lsn,
    /// What was appended.
    pub payload: Vec<u8>,
}

/// Size of what a log currently holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes held (approximate between refreshes).
    pub bytes: u64,
    /// Pieces held: segments of a WAL, messages of a stream.
    pub pieces: u64,
}

/// Why a log operation failed, and what to do about it.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum LogError {
    /// The local WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A newer writer took the log over: this writer must step down.
    #[error("log group {group} was fenced: writer at epoch {epoch} must step down ({detail})")]
    Fenced {
        /// The group.
        group: LogGroupId,
        /// This writer's epoch.
        epoch: Epoch,
        /// What showed it.
        detail: String,
    },
    /// The log service cannot be reached or has no quorum; retry later.
    #[error("log unavailable, retry later: {detail}")]
    Unavailable {
        /// What failed.
        detail: String,
        /// The client's error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A record that cannot be decoded, with where it is.
    #[error("corrupt log: {detail}")]
    Corrupt {
        /// Where and what.
        detail: String,
    },
    /// An earlier write or flush failed; reopen to continue.
    #[error("log poisoned by an earlier failure: reopen it to continue")]
    Poisoned,
}
