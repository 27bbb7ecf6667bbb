//! Storage for statefn: the log behind a trait, its local write-ahead log,
//! and the state store with the layout of the runtime's tables.
//!
//! This crate stores opaque values. It owns the on-disk layout (directories,
//! log framing, the keys of every table) but knows nothing about functions,
//! messages or async runtimes; `statefn` decides what the values mean.
//!
//! # Tour
//!
//! - [`DataDir`] owns a node's directory: it checks the format, shard and
//!   log-group counts and locks the directory against a second process.
//! - [`CommitLog`] is a log group's log as its single writer sees it:
//!   [`append`](CommitLog::append) records, [`flush`](CommitLog::flush) them
//!   and wait on the [`PendingFlush`] (on any thread, several in flight)
//!   until they are durable. A [`LogBackend`] opens it at an [`Epoch`] and
//!   returns the records to replay.
//! - [`WalBackend`] is the local implementation: one [`Wal`] per log group,
//!   a directory of checksummed segments. Opening a log cuts a torn tail and
//!   reports any other damage as corruption, with the file and offset.
//! - [`StateStore`] is the fjall-backed store that checkpoints write into;
//!   [`ShardTables`] and [`EgressTables`] are its tables, one module each.
//! - [`FileSystem`] is the seam under the log; `FaultyFs` (feature
//!   `fault-injection`) makes it fail on command in tests.
//!
//! # Durability
//!
//! A log record is durable once a [`PendingFlush`] covering it has resolved.
//! A state-store batch is durable once [`ShardBatch::commit`] (or
//! [`EgressBatch::commit`]) has returned. Any failed log write or fsync
//! poisons the log: it refuses further writes, and reopening recovers
//! exactly what reached the disk.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use statefn_store::{DataDir, Epoch, LogBackend, LogGroupId, Lsn, ShardId};
//! use statefn_store::{StateStore, StdFs, WalBackend, WalOptions};
//!
//! let root = tempfile::tempdir()?;
//! let data = DataDir::open(root.path(), 4)?;
//! let store = StateStore::open(&data.state_dir())?;
//! let logs = WalBackend::new(Arc::new(StdFs), &data.wal_root(), WalOptions::default());
//!
//! // Log group 0 commits two records of shard 2.
//! let mut group = logs.open(LogGroupId(0), Epoch(1), Lsn(1))?.log;
//! group.append(b"invocation 1")?;
//! let last = group.append(b"invocation 2")?;
//! let durable = group.flush()?.wait()?;
//! assert_eq!(durable, last);
//!
//! // A checkpoint covering them goes into the store, then the log is trimmed.
//! let mut checkpoint = store.shard(ShardId(2)).batch();
//! checkpoint.put_meta(durable.0.to_be_bytes().to_vec());
//! checkpoint.commit()?;
//! group.truncate_before(durable.next())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![warn(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::allow_attributes_without_reason
)]

mod data_dir;
mod ids;
mod io;
mod log;
mod state;
mod tables;
mod wal;

pub use data_dir::{
    DATA_DIR_FORMAT_VERSION, DataDir, DataDirError, OLDEST_DATA_DIR_FORMAT_VERSION,
};
pub use ids::{Epoch, LogGroupId, Lsn, ShardId};
#[cfg(feature = "fault-injection")]
pub use io::{Faults, FaultyFs};
pub use io::{FileSystem, LogFile, StdFs};
pub use log::{
    CommitLog, FlushWait, LogBackend, LogError, LogRecord, LogStats, OpenedLog, PendingFlush,
    WalBackend,
};
pub use state::{StateStore, StoreError};
pub use tables::{DueSlot, EgressBatch, EgressTables, ShardBatch, ShardRow, ShardTables};
pub use wal::{PendingSync, WAL_FORMAT_VERSION, Wal, WalError, WalOptions};
