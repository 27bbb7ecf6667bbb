//! The log behind a trait: what the runtime's commit path needs from a log
//! group's log, whatever keeps it.
//!
//! A log group's single writer [`append`](CommitLog::append)s records,
//! [`flush`](CommitLog::flush)es them and learns from the returned
//! [`PendingFlush`] when they are durable, on any thread, with more than one
//! flush in flight. Recovery reads the records from a position on
//! ([`LogBackend::open`]); a checkpoint lets the log forget what it covers
//! ([`truncate_before`](CommitLog::truncate_before)). Each writer has an
//! [`Epoch`]: opening a log at a newer epoch fences the older writer out.
//!
//! The local segment write-ahead log ([`WalBackend`]) is one implementation;
//! a replicated log (a NATS JetStream stream per group) is another. Nothing
//! here assumes files, fsync, or positions that count bytes or records.

mod error;
mod wal_backend;

use std::fmt;

pub use self::error::LogError;
pub use self::wal_backend::WalBackend;
use crate::{Epoch, LogGroupId, Lsn};

/// One log group's log, as its single writer sees it.
pub trait CommitLog: Send + fmt::Debug {
    /// Buffers one record for the next [`flush`](Self::flush) and returns the
    /// position it will have.
    ///
    /// # Durability
    ///
    /// None until a flush covering it has resolved.
    ///
    /// # Errors
    ///
    /// When the record cannot be taken (too large for the log, or the log is
    /// poisoned or fenced); the writer then treats the log as failed.
    fn append(&mut self, record: &[u8]) -> Result<Lsn, LogError>;

    /// Hands every appended record to the log (a write to the OS, a publish)
    /// and returns a handle that resolves once they are durable. Several
    /// flushes may be in flight; each resolves only after the earlier ones,
    /// so waiting for the latest covers all of them.
    ///
    /// # Errors
    ///
    /// When the records could not be handed over; nothing after
    /// [`durable_lsn`](Self::durable_lsn) may then be treated as committed.
    fn flush(&mut self) -> Result<PendingFlush, LogError>;

    /// The highest position known durable (`Lsn(0)`: none yet). Right after
    /// [`LogBackend::open`] it is the last record of the log.
    fn durable_lsn(&self) -> Lsn;

    /// Lets the log delete records below `lsn` (a checkpoint covers them); it
    /// may keep more.
    ///
    /// # Errors
    ///
    /// When the deletion failed; the records stay and a later call retries.
    fn truncate_before(&mut self, lsn: Lsn) -> Result<(), LogError>;

    /// This writer's epoch.
    fn epoch(&self) -> Epoch;

    /// How much the log currently holds, for status and checkpoint triggers.
    fn stats(&self) -> LogStats;

    /// Work the log can do ahead of time while its writer is idle, so that
    /// a later commit does not wait for it (the local log writes and syncs
    /// the next chunk of zeros its records will overwrite). Does nothing by
    /// default.
    ///
    /// # Errors
    ///
    /// When that work failed; the log may then be poisoned, and its next
    /// flush fails as after any other failure.
    fn prepare(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}

/// How much a log holds: bytes, and the pieces (segment files, or the
/// messages of a stream) they are in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Bytes held (records and framing).
    pub bytes: u64,
    /// Pieces held: segment files for the local log.
    pub pieces: u64,
}

impl LogStats {
    /// Stats of `bytes` in `pieces`.
    pub const fn new(bytes: u64, pieces: u64) -> Self {
        LogStats { bytes, pieces }
    }
}

/// What a [`PendingFlush`] waits on: implemented by each log.
pub trait FlushWait: Send + fmt::Debug {
    /// Blocks until the records are durable; returns the highest durable
    /// position.
    ///
    /// # Errors
    ///
    /// When they may not be durable: the log is poisoned or fenced.
    fn wait(self: Box<Self>) -> Result<Lsn, LogError>;
}

/// Resolves when a flush is durable; `Send`, so another thread can wait.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use statefn_store::{Epoch, LogBackend, LogGroupId, Lsn, StdFs, WalBackend, WalOptions};
///
/// let dir = tempfile::tempdir()?;
/// let backend = WalBackend::new(Arc::new(StdFs), dir.path(), WalOptions::default());
/// let mut opened = backend.open(LogGroupId(0), Epoch(1), Lsn(1))?;
/// let first = opened.log.append(b"a")?;
/// let pending = opened.log.flush()?;
/// assert_eq!(pending.up_to(), first);
/// let durable = std::thread::spawn(move || pending.wait()).join().expect("waiter")?;
/// assert_eq!(durable, first);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "records are not durable until the PendingFlush has resolved"]
#[derive(Debug)]
pub struct PendingFlush {
    up_to: Lsn,
    wait: Box<dyn FlushWait>,
}

impl PendingFlush {
    /// A pending flush of the records up to `up_to`, resolved by `wait`.
    pub fn new(up_to: Lsn, wait: Box<dyn FlushWait>) -> Self {
        PendingFlush { up_to, wait }
    }

    /// The highest position durable once this resolves.
    pub fn up_to(&self) -> Lsn {
        self.up_to
    }

    /// Blocks until durable and returns the highest durable position.
    ///
    /// # Durability
    ///
    /// When this returns `Ok(lsn)`, every record at a position `<= lsn`
    /// survives a crash (of the machine, for the local log; of a minority of
    /// replicas, for a replicated one).
    ///
    /// # Errors
    ///
    /// The log is poisoned or fenced: nothing after the last position known
    /// durable may be treated as committed.
    pub fn wait(self) -> Result<Lsn, LogError> {
        self.wait.wait()
    }
}

/// Opens the logs of log groups: the local write-ahead log directories, or
/// the streams of a replicated log.
pub trait LogBackend: Send + Sync + fmt::Debug {
    /// Opens `group`'s log as its only writer at `epoch` (or a higher epoch
    /// the log chooses, e.g. above every fence it finds; the returned log's
    /// [`epoch`](CommitLog::epoch) says which), fencing out any earlier
    /// writer, and returns it with a reader of its records at positions
    /// `>= from`, in order (the log's own control records are not returned).
    ///
    /// # Errors
    ///
    /// When the log cannot be opened or read ([`LogError::Corrupt`] for
    /// damage, with where it is), or a newer writer holds it.
    fn open(&self, group: LogGroupId, epoch: Epoch, from: Lsn) -> Result<OpenedLog, LogError>;

    /// Opens `group`'s log again after this process's writer of it failed
    /// (a flush or its wait returned an error), as [`open`](Self::open), but
    /// first drops every record after `durable`, the failed writer's last
    /// [`durable_lsn`](CommitLog::durable_lsn), for every later reader: the
    /// writer's caller told the callers of those records that they were not
    /// committed, so they must never be replayed, even where the log holds
    /// them (a page cache after a failed `fdatasync`, a record the stream
    /// stored but never confirmed).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    fn reopen_after_failure(
        &self,
        group: LogGroupId,
        epoch: Epoch,
        from: Lsn,
        durable: Lsn,
    ) -> Result<OpenedLog, LogError>;
}

/// A log opened for writing, with the records to replay.
pub struct OpenedLog {
    /// The log, positioned after its last record.
    pub log: Box<dyn CommitLog>,
    /// The records at positions `>= from`, in order.
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
