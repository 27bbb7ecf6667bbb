//! The per-shard write-ahead log.
//!
//! One directory per shard holds segment files named by their first LSN
//! (`00000000000000000001.wal`). Each starts with a header (magic, format
//! version, first LSN) followed by records framed as
//! `[len: u32 LE][crc32c: u32 LE][lsn: u64 LE][payload]`, the checksum
//! covering LSN and payload.
//!
//! On open every segment is validated. A torn tail (the writer crashed in the
//! middle of its last write) is cut off with a warning; any other damage is
//! [`WalError::Corrupt`] with the file and the offset, never skipped, because
//! the records after it may be the only copy of committed work.

mod error;
mod lsn;
mod reader;
mod record;
mod recovery;
mod segment;
mod sync;
mod writer;

pub use error::WalError;
pub use lsn::Lsn;
pub use segment::WAL_FORMAT_VERSION;
pub use sync::PendingSync;
pub use writer::{Wal, WalOptions};

/// A recovered record: its LSN and payload.
pub type Record = (Lsn, Vec<u8>);
