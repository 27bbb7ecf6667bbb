//! The local write-ahead log of one log group: the first implementation of
//! [`CommitLog`](crate::CommitLog), through [`WalBackend`](crate::WalBackend).
//!
//! One directory per log group holds segment files named by their first LSN
//! (`00000000000000000001.wal`). Each starts with a header (magic, format
//! version, first LSN) followed by records framed as
//! `[len: u32 LE][crc32c: u32 LE][lsn: u64 LE][payload]`, the checksum
//! covering LSN and payload. The active segment's records are followed by
//! zeros written ahead of the writer ([`prealloc`]), which its records then
//! overwrite in place; all zeros after the last record is the clean end of
//! a segment.
//!
//! On open every segment is validated. A torn tail (the writer crashed in the
//! middle of its last write, or the power went during its sync and an earlier
//! page of it never reached the disk) is cut off with a warning; any other
//! damage is [`WalError::Corrupt`] with the file and the offset, never
//! skipped, because the records after it may be the only copy of committed
//! work.

mod error;
mod prealloc;
mod reader;
mod record;
mod recovery;
mod segment;
mod sync;
mod writer;

pub(crate) use crate::Lsn;
pub use error::WalError;
pub use segment::WAL_FORMAT_VERSION;
pub use sync::PendingSync;
pub use writer::{Wal, WalOptions};

pub(crate) use crate::LogRecord as Record;

/// The longest record payload the framing can hold (its length is a `u32`).
pub(crate) const MAX_RECORD_LEN: usize = u32::MAX as usize;
