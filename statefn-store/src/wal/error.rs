//! [`WalError`]: everything that can go wrong in the write-ahead log.

use std::io;
use std::path::PathBuf;

/// An error from the write-ahead log.
///
/// Any error from [`Wal::write`](super::Wal::write) or
/// [`PendingSync::sync`](super::PendingSync::sync) leaves the log poisoned:
/// the log group's shards must be taken down and the log reopened, which
/// recovers every record that was durable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file-system call failed.
    #[error(
        "I/O error on write-ahead log file {}: {source}; check the disk, free space and permissions, then reopen the log",
        path.display()
    )]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A segment holds data that cannot be a torn tail: a bad record followed
    /// by valid ones, damage in a segment that is not the last, a missing
    /// segment. Never skipped, because the records after it may be needed.
    #[error(
        "write-ahead log segment {} is corrupt at byte offset {offset}: {reason}; the log cannot be recovered automatically: inspect the file, restore it from a backup, or remove the damaged data by hand if losing those records is acceptable",
        path.display()
    )]
    Corrupt {
        /// The segment file (or the log directory, for whole-log problems).
        path: PathBuf,
        /// Byte offset of the first bad byte within the file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// The segment was written by a newer version of statefn.
    #[error(
        "write-ahead log segment {} has format version {found}, but this build supports up to version {supported}; upgrade statefn to read it",
        path.display()
    )]
    UnsupportedVersion {
        /// The segment file.
        path: PathBuf,
        /// The version in its header.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },

    /// An earlier write or fsync failed, so what is on disk is unknown (after
    /// a failed fsync the kernel may have dropped the dirty pages). The log
    /// refuses further writes instead of pretending they are durable.
    #[error(
        "write-ahead log is poisoned by an earlier write or fsync failure; reopen the log to recover from what reached the disk"
    )]
    Poisoned,
}

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { path, source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        WalError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
